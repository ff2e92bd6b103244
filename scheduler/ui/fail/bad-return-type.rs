use scheduler::task;

#[task]
async fn answer() -> u32 {
    42
}

fn main() {}
