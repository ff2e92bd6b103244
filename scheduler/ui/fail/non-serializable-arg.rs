use scheduler::task;

struct Message {
    text: String,
}

#[task]
async fn notify(user_id: u64, message: Message) {
    let _ = (user_id, message.text);
}

fn main() {}
