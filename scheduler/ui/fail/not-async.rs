use scheduler::task;

#[task]
fn cleanup(days: u32) {
    let _ = days;
}

fn main() {}
