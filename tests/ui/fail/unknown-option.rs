use scheduler::task;

#[task(queue = "emails")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
