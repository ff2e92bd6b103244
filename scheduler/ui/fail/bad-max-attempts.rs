use scheduler::task;

#[task(max_attempts = 0)]
async fn send(to: String) {
    let _ = to;
}

fn main() {}
