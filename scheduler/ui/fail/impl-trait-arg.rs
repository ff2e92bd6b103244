use scheduler::task;

#[task]
async fn greet(name: impl std::fmt::Display) {
    let _ = name.to_string();
}

fn main() {}
