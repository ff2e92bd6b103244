use scheduler::task;

#[task(timeout = "30s", timeout = "1m")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
