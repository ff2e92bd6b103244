use scheduler::task;

#[task(timeout = "abc")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
