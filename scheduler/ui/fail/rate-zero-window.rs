use scheduler::task;

#[task(rate = "100/0s")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
