use scheduler::task;

#[task]
async fn greet(name: &str) {
    let _ = name;
}

fn main() {}
