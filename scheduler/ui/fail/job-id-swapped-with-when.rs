use scheduler::chrono::Utc;
use scheduler::{task, Scheduler};

#[task]
async fn send(user_id: u64) {
    let _ = user_id;
}

async fn caller(scheduler: &Scheduler) {
    let _ = send::defer_to(scheduler, Utc::now(), "job-1", 42).await;
}

fn main() {}
