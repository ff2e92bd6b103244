use scheduler::task;

#[task(cron = "0 9 * * MON-FRU")]
async fn report() {}

fn main() {}
