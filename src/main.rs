//! The `authgate` command: `run` (the default) serves gateway.toml, `check` validates it.
//! Installs the process-wide crypto provider (aws-lc-rs) before anything touches TLS.

use std::path::PathBuf;
use std::process::ExitCode;

use authgate::config::Config;
use authgate::server::RunningGateway;
use clap::{Args, Parser, Subcommand};

mod commands;

use commands::{clients, keys, names, users};

/// A reverse-proxy authentication gateway.
#[derive(Parser)]
#[command(name = "authgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with the given configuration (the default command).
    Run(ConfigArg),
    /// Validate the configuration as a start would, without serving; exit 1 on any error.
    Check(ConfigArg),
    /// Mint a token with a configured issuer that holds a secret or private key (dev, tests).
    Token(TokenArgs),
    /// API key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Users of the token service.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Client-credentials clients of the token service.
    #[command(subcommand)]
    Clients(ClientsCommand),
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Print the `[[token_service.clients]]` entry of a new client on stdout (it holds only the
    /// secret's hash), and the generated secret, once, on stderr or into `--secret-out`.
    Add {
        /// The client id (`client_id`, the HTTP Basic user name).
        id: String,
        /// Scopes the client may be granted, separated by commas or spaces (repeatable).
        #[arg(long, alias = "scope")]
        scopes: Vec<String>,
        /// Write the secret into this new file (mode 0600) instead of showing it on stderr.
        #[arg(long, value_name = "FILE")]
        secret_out: Option<PathBuf>,
        /// The client's plan (a `[plans.NAME]`); default: `[consumers] default_plan`.
        #[arg(long)]
        plan: Option<String>,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user to the users file: the password is read from stdin (or asked for at a
    /// terminal) and only its argon2id hash is written.
    Add {
        /// The login name.
        username: String,
        /// The `sub` of the user's tokens (default: the username).
        #[arg(long)]
        subject: Option<String>,
        /// Scopes granted at login, separated by commas or spaces (repeatable).
        #[arg(long, alias = "scope")]
        scopes: Vec<String>,
        /// Roles granted at login, separated by commas or spaces (repeatable).
        #[arg(long, alias = "role")]
        roles: Vec<String>,
        /// The user's plan (a `[plans.NAME]`); default: `[consumers] default_plan`.
        #[arg(long)]
        plan: Option<String>,
        /// The users file (default: `[token_service] users` of the configuration).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the keys-file entry of a new API key on stdout (it holds only the key's hash),
    /// and the key itself, once, on stderr or into `--key-out`.
    New {
        /// The subject the key speaks for.
        #[arg(long)]
        subject: String,
        /// Scopes, separated by commas or spaces (repeatable).
        #[arg(long, alias = "scope")]
        scopes: Vec<String>,
        /// Roles, separated by commas or spaces (repeatable).
        #[arg(long, alias = "role")]
        roles: Vec<String>,
        /// Write the key into this new file (mode 0600) instead of showing it on stderr.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
        /// The key's plan (a `[plans.NAME]`); default: `[consumers] default_plan`.
        #[arg(long)]
        plan: Option<String>,
        /// Lifetime, e.g. "90d".
        #[arg(long)]
        expires: Option<String>,
        /// The entry id; default: the subject and part of the hash.
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// The issuer id, from [[issuers]].
    #[arg(long)]
    issuer: String,
    /// The subject (`sub`).
    #[arg(long)]
    sub: String,
    /// Scopes (`scope`), separated by commas or spaces (repeatable).
    #[arg(long, alias = "scopes")]
    scope: Vec<String>,
    /// The audience (`aud`); default: the issuer's first configured audience.
    #[arg(long)]
    aud: Option<String>,
    /// Lifetime, e.g. "15m", "1h".
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Extra claims as NAME=VALUE (VALUE read as JSON when it parses, else as a string).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, env = "AUTHGATE_CONFIG", default_value = "gateway.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        Command::Run(ConfigArg {
            config: std::env::var_os("AUTHGATE_CONFIG")
                .map_or_else(|| "gateway.toml".into(), PathBuf::from),
        })
    });
    // One crypto provider for everything; a second install can only fail if one exists already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match command {
        Command::Check(args) => check(&args.config),
        Command::Run(args) => run(&args.config),
        Command::Token(args) => token(&args),
        Command::Keys(KeysCommand::New {
            subject,
            scopes,
            roles,
            key_out,
            plan,
            expires,
            id,
        }) => keys::new(
            &keys::NewKey {
                subject,
                scopes: names(&scopes),
                roles: names(&roles),
                plan,
                id,
            },
            expires.as_deref(),
            key_out.as_deref(),
        ),
        Command::Clients(ClientsCommand::Add {
            id,
            scopes,
            secret_out,
            plan,
        }) => clients::add(&id, &names(&scopes), plan.as_deref(), secret_out.as_deref()),
        Command::Users(UsersCommand::Add {
            username,
            subject,
            scopes,
            roles,
            plan,
            file,
            config,
        }) => {
            let user = users::NewUser {
                username,
                subject,
                scopes: names(&scopes),
                roles: names(&roles),
                plan,
            };
            users::add(&user, file, &config.config)
        }
    }
}

fn token(args: &TokenArgs) -> ExitCode {
    let Some(config) = load(&args.config.config) else {
        return ExitCode::FAILURE;
    };
    match authgate::auth::mint::mint(
        &config,
        &args.issuer,
        &args.sub,
        Some(names(&args.scope).join(" "))
            .filter(|scope| !scope.is_empty())
            .as_deref(),
        args.aud.as_deref(),
        &args.ttl,
        &args.claims,
    ) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("authgate token: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration for a command that only reads it: nothing is written.
fn load(path: &std::path::Path) -> Option<Config> {
    report(Config::inspect(path))
}

fn report(loaded: Result<Config, authgate::config::ConfigErrors>) -> Option<Config> {
    match loaded {
        Ok(config) => Some(config),
        Err(errors) => {
            for diagnostic in &errors.diagnostics {
                eprintln!("{diagnostic}");
            }
            None
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Some(config) => {
            println!(
                "{}: ok ({} routes, {} upstreams)",
                path.display(),
                config.routes.len(),
                config.upstreams.len()
            );
            for note in &config.notes {
                println!("note: {note}");
            }
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    // Before reading: an edit made while the gateway starts must still trigger a reload.
    let baseline = authgate::server::Baseline::before_reading(path);
    let Some(config) = report(Config::load(path)) else {
        return ExitCode::FAILURE;
    };
    let baseline = baseline.with_sources(&config);
    // Levels from RUST_LOG (default info); the format from [log]. A reload cannot change the
    // format: the subscriber is process-wide. rustls warns about what clients do (an IP address
    // sent as SNI, say) once per handshake: a flood, not news, unless RUST_LOG asks for it.
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let directives = if directives.contains("rustls") {
        directives
    } else {
        format!("{directives},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log_json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    // One worker: a current-thread runtime serves everything on this thread, without the
    // work-stealing scheduler's queues and cross-thread wake-ups that buy nothing with one.
    let mut runtime = if config.server.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if config.server.workers > 1 {
        runtime.worker_threads(config.server.workers);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(path.to_path_buf(), config, baseline))
}

async fn serve(path: PathBuf, config: Config, baseline: authgate::server::Baseline) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};

    // Handlers first: a signal that arrives as soon as the listeners are up (a supervisor's
    // reload, say) must find them installed, not the default action that kills the process.
    let (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // What is about to serve, so that a log shows which file and which routes were in force.
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|route| format!("{} {}", route.id, route.path))
        .collect();
    tracing::info!(
        config = %path.display(),
        routes = %routes.join(", "),
        issuers = config.issuers.len(),
        upstreams = config.upstreams.len(),
        "starting"
    );
    for note in &config.notes {
        tracing::info!("{note}");
    }
    let gateway = match RunningGateway::start(config).await {
        Ok(gateway) => gateway,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let reloader = gateway.reloader();
    let watcher = reloader.clone().watch(path.clone(), baseline);
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                reloader.reload_file(&path);
            }
        }
    }
    watcher.abort();
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    // A second signal during the drain means "now".
    enum Drain {
        Finished,
        GraceOver,
        SecondSignal,
    }
    let drain = tokio::select! {
        drained = gateway.shutdown() => if drained { Drain::Finished } else { Drain::GraceOver },
        _ = terminate.recv() => Drain::SecondSignal,
        _ = interrupt.recv() => Drain::SecondSignal,
    };
    match drain {
        Drain::Finished => tracing::info!("all requests finished; exiting"),
        Drain::GraceOver => {
            tracing::warn!("shutdown grace period over; closed the remaining connections")
        }
        Drain::SecondSignal => tracing::warn!(
            "a second signal during the drain: exiting now, without waiting for requests in flight"
        ),
    }
    ExitCode::SUCCESS
}
