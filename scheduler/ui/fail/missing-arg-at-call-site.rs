use scheduler::{task, Scheduler};

#[task]
async fn send(user_id: u64, text: String) {
    let _ = (user_id, text);
}

async fn caller(scheduler: &Scheduler) {
    let _ = send::enqueue(scheduler, "job-1", 42).await;
}

fn main() {}
