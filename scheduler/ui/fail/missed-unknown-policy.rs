use scheduler::task;

#[task(cron = "0 9 * * *", missed = "catch_up")]
async fn report() {}

fn main() {}
