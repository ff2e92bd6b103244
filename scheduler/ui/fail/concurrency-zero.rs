use scheduler::task;

#[task(concurrency = 0, key_concurrency = 0)]
async fn push(user: u64) {
    let _ = user;
}

fn main() {}
