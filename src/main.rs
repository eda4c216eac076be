//! The `loopscale` binary: parse the command line, own the process's signals, hand the command
//! to the library, report errors.

use clap::Parser;
use loopscale::cli::{Cli, SecondInterrupt};
use loopscale::engine::Interrupts;

fn main() {
    // Die quietly when stdout is closed (`loopscale plan x.toml | head`), like other Unix tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let interrupts = Interrupts::new();
    // Commands that stop cleanly get Ctrl-C and SIGTERM (Slurm cancels and preempts with it) as
    // counted requests; every other command keeps the default: Ctrl-C ends it.
    if let Some(second) = cli.command.handles_interrupts() {
        let requests = interrupts.clone();
        let installed = ctrlc::set_handler(move || {
            if requests.request() >= 2 && second == SecondInterrupt::Exit {
                std::process::exit(130);
            }
        });
        if let Err(e) = installed {
            eprintln!("error: cannot install the Ctrl-C handler: {e}");
            std::process::exit(1);
        }
    }
    match loopscale::cli::execute(cli, &interrupts) {
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
