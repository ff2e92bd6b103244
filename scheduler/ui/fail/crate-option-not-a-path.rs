use scheduler::task;

#[task(crate = "scheduler")]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
