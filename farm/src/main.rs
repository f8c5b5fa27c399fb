//! `longshore-farm`: the local farm's command line.
//!
//! - `jenkins`: one simulated Jenkins master on loopback (several masters = several processes).
//! - `deploy-local`: infra/template.yaml into a local moto (`make deploy-local`).
//! - `demo`: the whole farm (moto, two masters, booting agents, a job trace) with live progress.
//! - `simulate`: the policy simulator of `make bench` (simulated time, no network).
//! - `chaos`: the seeded fault harness of `make chaos`.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use longshore_farm::demo::{self, DemoOptions};
use longshore_farm::jenkins::{SimConfig, Simulator};
use longshore_farm::simulate::{self, SimulateOptions};

#[derive(Parser)]
#[command(name = "longshore-farm", about = "longshore's local farm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one simulated Jenkins master on 127.0.0.1 until interrupted.
    Jenkins {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "admin")]
        user: String,
        #[arg(long, default_value = "admin")]
        token: String,
        /// The master's name, as the scaler's tags know it.
        #[arg(long, default_value = "master-a")]
        name: String,
    },
    /// Run the whole farm locally against a job trace and print a summary.
    Demo(DemoOptions),
    /// Compare scaling policies on build traces in simulated time (policy.json, policy.png).
    Simulate(SimulateOptions),
    /// Deploy infra/template.yaml into a fresh local moto and answer its custom resource.
    DeployLocal(longshore_farm::deploy::DeployLocalArgs),
    /// Seeded fault scenarios on the fast local farm; checks the invariants (summary.json).
    Chaos(longshore_farm::chaos::ChaosOptions),
    /// Each Lambda binary's init, cold start, warm invocation, peak RSS and size (lambda.json).
    Footprint(longshore_farm::footprint::FootprintOptions),
    /// The last step of `make bench`: one table of the run's figures, with ratios.
    BenchReport(longshore_farm::bench_report::BenchReportOptions),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Chaos(_)) {
        // The same text output, and each run's own log for the failing ones.
        longshore_farm::chaos::logs::install();
    } else {
        longshore::telemetry::init_text();
    }
    match cli.command {
        Command::Jenkins {
            port,
            user,
            token,
            name,
        } => serve_jenkins(port, user, token, name).await,
        Command::DeployLocal(args) => longshore_farm::deploy::run_cli(args).await,
        Command::Footprint(options) => longshore_farm::footprint::run_cli(options).await,
        Command::BenchReport(options) => longshore_farm::bench_report::run_cli(options),
        Command::Chaos(options) => match longshore_farm::chaos::run_cli(options).await {
            Ok(summary) if summary.invariants_hold() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("chaos failed: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Demo(options) => match demo::run(options).await {
            Ok(report) if report.invariants_hold() => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("demo: an invariant broke (see the summary above)");
                ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("demo failed: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate(options) => match simulate::run(&options) {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("simulate failed: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve_jenkins(port: u16, user: String, token: String, name: String) -> ExitCode {
    let config = SimConfig {
        name,
        user,
        token,
        ..SimConfig::default()
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let running = match Simulator::start(config, addr).await {
        Ok(running) => running,
        Err(err) => {
            eprintln!("cannot serve on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("Jenkins simulator at {}", running.url());
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("cannot wait for Ctrl-C: {err}");
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}
