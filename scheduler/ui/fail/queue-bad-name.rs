use scheduler::task;

#[task(queue = "e-mails and texts")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
