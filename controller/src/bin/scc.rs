//! `scc`: command-line front end of the supercloud controller.

fn main() {
    eprintln!("scc: no command is implemented yet");
    std::process::exit(2);
}
