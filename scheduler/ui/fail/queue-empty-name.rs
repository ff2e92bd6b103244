use scheduler::task;

#[task(queue = "")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
