use scheduler::task;

#[task]
async fn add((a, b): (u8, u8)) {
    let _ = a + b;
}

fn main() {}
