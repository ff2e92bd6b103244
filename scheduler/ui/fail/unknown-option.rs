use scheduler::task;

#[task(queues = "emails")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
