use scheduler::task;

#[task(cron = "0 9 * * MON-FRI", tz = "Europe/Pariss")]
async fn report() {}

fn main() {}
