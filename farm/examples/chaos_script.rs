//! Prints the script a chaos seed plays (jobs, faults and their ticks, boot fault rates,
//! custom resource requests), to read next to a failing seed's logs:
//! `target/debug/examples/chaos_script 142`.

fn main() {
    let Some(seed) = std::env::args().nth(1).and_then(|s| s.parse::<u64>().ok()) else {
        eprintln!("usage: chaos_script SEED");
        std::process::exit(2);
    };
    println!(
        "{:#?}",
        longshore_farm::chaos::scenario::Scenario::from_seed(seed)
    );
}
