//! The `loopscale` binary: parse the command line, hand it to the library, report errors.

use clap::Parser;

fn main() {
    let cli = loopscale::cli::Cli::parse();
    match loopscale::cli::execute(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
