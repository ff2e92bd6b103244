use scheduler::task;

#[task(tz = "Europe/Paris")]
async fn report() {}

fn main() {}
