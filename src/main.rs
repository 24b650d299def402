//! The `authgate` command: `run` (the default) serves gateway.toml, `check` validates it.
//! Installs the process-wide crypto provider (aws-lc-rs) before anything touches TLS.

use std::path::PathBuf;
use std::process::ExitCode;

use authgate::config::Config;
use authgate::server::RunningGateway;
use clap::{Args, Parser, Subcommand};

mod users;

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
        /// Comma-separated scopes granted at login.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Comma-separated roles granted at login.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// The users file (default: `[token_service] users` of the configuration).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new API key (once) and the keys-file entry that holds only its hash.
    New {
        /// The subject the key speaks for.
        #[arg(long)]
        subject: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
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
    /// Space-separated scopes (`scope`).
    #[arg(long)]
    scope: Option<String>,
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
            expires,
            id,
        }) => new_key(&subject, &scopes, expires.as_deref(), id.as_deref()),
        Command::Users(UsersCommand::Add {
            username,
            subject,
            scopes,
            roles,
            file,
            config,
        }) => {
            let user = users::NewUser {
                username,
                subject,
                scopes,
                roles,
            };
            users::add(&user, file, &config.config)
        }
    }
}

fn new_key(subject: &str, scopes: &[String], expires: Option<&str>, id: Option<&str>) -> ExitCode {
    let expires = match expires
        .map(authgate::config::units::parse_duration)
        .transpose()
    {
        Ok(lifetime) => lifetime.map(|d| {
            authgate::auth::unix_now() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
        }),
        Err(message) => {
            eprintln!("authgate keys new: --expires: {message}");
            return ExitCode::FAILURE;
        }
    };
    match authgate::auth::api_keys::new_entry(id, subject, scopes, expires) {
        Ok((key, entry)) => {
            eprintln!("The key is shown once; give it to its holder now. Add the entry below to the keys file.");
            println!("{key}\n\n{entry}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("authgate keys new: {message}");
            ExitCode::FAILURE
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
        args.scope.as_deref(),
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

fn load(path: &std::path::Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            for diagnostic in &errors.0 {
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
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
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
    runtime.block_on(serve(path.to_path_buf(), config))
}

async fn serve(path: PathBuf, config: Config) -> ExitCode {
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
    let gateway = match RunningGateway::start(config).await {
        Ok(gateway) => gateway,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let reloader = gateway.reloader();
    let watcher = reloader.clone().watch(path.clone());
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
    let drained = tokio::select! {
        drained = gateway.shutdown() => drained,
        _ = terminate.recv() => false,
        _ = interrupt.recv() => false,
    };
    if drained {
        tracing::info!("all requests finished; exiting");
    } else {
        tracing::warn!("shutdown grace period over; closed the remaining connections");
    }
    ExitCode::SUCCESS
}
