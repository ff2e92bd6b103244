use scheduler::task;

#[task]
struct Send {
    to: String,
}

fn main() {}
