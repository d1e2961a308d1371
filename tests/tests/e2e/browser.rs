//! A real browser for page tests: Debian's headless Chromium driven through ChromeDriver
//! (WebDriver, via fantoccini). Each test starts its own ChromeDriver on a free port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub struct Browser {
    pub client: Client,
    driver: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn find(program: &str) -> String {
    let candidates = [
        format!("/usr/bin/{program}"),
        format!("/usr/local/bin/{program}"),
    ];
    candidates
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed; page tests need Debian's chromium and \
                 chromium-driver (`apt-get install chromium chromium-driver`; .ci/run does this)"
            )
        })
}

impl Browser {
    pub async fn start() -> Self {
        let port = free_port();
        let driver = Command::new(find("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": find("chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--no-first-run", "--window-size=1200,900"],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls()
                .expect("rustls connector")
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot start a Chromium session: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Self { client, driver }
    }

    /// Waits up to 30 s for an element matching `css` whose text satisfies `check`; returns the text.
    pub async fn wait_for_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if check(&text) {
                    return text;
                }
                last = text;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot(css).await;
                panic!(
                    "`{css}` never showed the expected text; last seen: {last:?} (screenshot: {shot})"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the input matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = match self.client.find(Locator::Css(css)).await {
            Ok(input) => input,
            Err(error) => {
                let shot = self.screenshot(css).await;
                panic!("no `{css}` on the page: {error} (screenshot: {shot})");
            }
        };
        input.clear().await.expect("input clears");
        input.send_keys(text).await.expect("typing works");
    }

    /// Loads `url` (as typing it in the address bar).
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
    }

    pub async fn click(&self, css: &str) {
        let element = match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => {
                let shot = self.screenshot(css).await;
                panic!("no `{css}` on the page: {error} (screenshot: {shot})");
            }
        };
        element.click().await.expect("click works");
    }

    /// Saves what the browser shows under the test root's `screenshots/`, for a failing step;
    /// returns where (or why there is none).
    pub async fn screenshot(&self, step: &str) -> String {
        let folder = crate::harness::test_root().join("screenshots");
        let name: String = step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(60)
            .collect();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let path = folder.join(format!("{stamp}-{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => {
                match std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(&path, png)) {
                    Ok(()) => path.display().to_string(),
                    Err(error) => format!("not saved: {error}"),
                }
            }
            Err(error) => format!("not taken: {error}"),
        }
    }

    pub async fn finish(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
