fn main() {
    eprintln!("guestnetctl: not written yet");
    std::process::exit(1)
}
