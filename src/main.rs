//! The `loopscale` binary: parse the command line, hand it to the library, report errors.

use clap::Parser;

fn main() {
    // Die quietly when stdout is closed (`loopscale plan x.toml | head`), like other Unix tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = loopscale::cli::Cli::parse();
    match loopscale::cli::execute(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Sweep-file errors render themselves rustc-style, with the offending line.
            match e.downcast_ref::<loopscale::sweep::SweepError>() {
                Some(sweep_error) => eprintln!("{sweep_error}"),
                None => eprintln!("error: {e:#}"),
            }
            std::process::exit(1);
        }
    }
}
