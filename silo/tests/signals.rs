//! The real process and a real signal: `silo serve` (the production command, as systemd runs it)
//! gets SIGTERM while a request is in flight. The request is still answered, new connections are
//! refused, the process exits with success, and the PostgreSQL it started is stopped.
//!
//! Uses the embedded PostgreSQL the binary starts in a fresh data folder (the README's way), so
//! it needs PostgreSQL's server binaries, as every other test does.

// Test helpers unwrap too: a panic with a backtrace is the clearest failure a test can give.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `silo` binary under test, killed if the test ends before it does.
struct Silo(Child);

impl Drop for Silo {
    /// A test that failed half-way still leaves nothing running: asked to stop (so it stops its
    /// PostgreSQL), then killed if it will not.
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(30) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `silo serve` on a free loopback port in `data_dir`; answers the process, its address
/// once it says it is ready, and the lines it prints from then on.
fn start(data_dir: &Path) -> (Silo, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["--data-dir"])
        .arg(data_dir)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env_remove("SILO_DATABASE_URL")
        .env_remove("SILO_MASTER_KEYS")
        .env_remove("SILO_HTTP_ADDR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the silo binary starts");
    let (lines, received) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    let silo = Silo(child);
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = Duration::from_secs(180).saturating_sub(started.elapsed());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("silo serve never said it was ready: {seen:#?}"));
        // "  Sign up:        http://localhost:PORT/"
        if let Some(port) = line
            .split_once("Sign up:")
            .and_then(|(_, url)| url.trim().rsplit_once(':'))
            .and_then(|(_, port)| port.trim_end_matches('/').parse::<u16>().ok())
        {
            return (silo, SocketAddr::from(([127, 0, 0, 1], port)), received);
        }
        seen.push(line);
    }
}

/// The status line of `GET path` on `address`.
fn get(address: SocketAddr, path: &str) -> String {
    let mut socket = TcpStream::connect(address).expect("connects");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    status_line(&mut socket)
}

fn status_line(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Every `postmaster.pid` under `folder`: the clusters still running there.
fn running_clusters(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path
                .file_name()
                .is_some_and(|name| name == "postmaster.pid")
            {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits_cleanly_and_stops_its_postgres() {
    let data_dir = std::env::temp_dir().join(format!("silo-sigterm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let (mut silo, address, lines) = start(&data_dir);
    assert!(get(address, "/readyz").contains(" 200 "), "ready before");
    assert!(
        !running_clusters(&data_dir).is_empty(),
        "its PostgreSQL runs"
    );

    // A signup whose body is half sent when the signal comes: in flight.
    let body = r#"{"company_name":"Signal","subdomain":"sig","admin_email":"a@sig.test","admin_password":"violet tram oyster gravel"}"#;
    let mut in_flight = TcpStream::connect(address).unwrap();
    write!(
        in_flight,
        "POST /api/v1/signups HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    in_flight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let sent = Command::new("kill")
        .args(["-TERM", &silo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // The listener closes: a new connection is refused soon after the signal.
    let signalled = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "still accepting connections 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The request in flight is finished and answered.
    in_flight.write_all(&body.as_bytes()[10..]).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let answered = status_line(&mut in_flight);
    assert!(
        answered.starts_with("HTTP/1.1 ") && !answered.contains(" 5"),
        "the request in flight was answered: {answered:?}"
    );

    // The process ends by itself, successfully, having stopped its PostgreSQL.
    let exited = Instant::now();
    let status = loop {
        if let Some(status) = silo.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            exited.elapsed() < Duration::from_secs(60),
            "silo serve still runs a minute after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "exit {status}: {printed:#?}");
    assert!(
        printed.iter().any(|line| line.contains("Stopping")),
        "{printed:#?}"
    );
    assert_eq!(
        running_clusters(&data_dir),
        Vec::<std::path::PathBuf>::new(),
        "its PostgreSQL was stopped"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
