//! nginx + nchan (the Debian packages `nginx-light` and `libnginx-mod-nchan`) as a second peer.
//!
//! The benchmark writes the whole configuration into a directory of its own: one worker process, an
//! `eventsource` subscriber location with the same path shape as sse-server's (`/events/<channel>`),
//! a publisher location (`/pub/<channel>`, so POSTs go there), a message buffer sized for the
//! scenario, `keepalive_requests` raised so the pipelined publisher is never cut off, and enough
//! connections and descriptors for 10k subscribers. nginx runs in the foreground as its own process;
//! its RSS and CPU are the master's plus the worker's (see [`procfs::sample_tree`](crate::procfs::sample_tree)).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::server::ServerProc;

/// Where Debian puts nginx's dynamic modules.
const MODULE_DIRS: [&str; 2] = ["/usr/lib/nginx/modules", "/usr/share/nginx/modules"];

/// How to run nginx with nchan on this machine.
#[derive(Debug, Clone)]
pub struct Nchan {
    /// The nginx binary.
    pub nginx: PathBuf,
    /// The nchan module to `load_module`, or `None` when nginx has it built in.
    pub module: Option<PathBuf>,
}

/// How one nchan server is set up.
#[derive(Debug, Clone, Default)]
pub struct NchanConfig {
    /// `nchan_message_buffer_length`: the events each channel keeps for `Last-Event-ID`.
    pub buffer_length: usize,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Nchan {
    /// Finds nginx and the nchan module; the error says what is missing and how to install it.
    pub fn find() -> Result<Nchan, String> {
        let nginx = which("nginx").ok_or_else(|| {
            "nginx not found on PATH (apt-get install nginx-light libnginx-mod-nchan)".to_owned()
        })?;
        let built_in = Command::new(&nginx)
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).contains("nchan"))
            .unwrap_or(false);
        if built_in {
            return Ok(Nchan {
                nginx,
                module: None,
            });
        }
        let module = MODULE_DIRS
            .iter()
            .map(|d| Path::new(d).join("ngx_nchan_module.so"))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                "the nchan module (ngx_nchan_module.so) is missing (apt-get install libnginx-mod-nchan)"
                    .to_owned()
            })?;
        Ok(Nchan {
            nginx,
            module: Some(module),
        })
    }

    /// Writes the configuration into a new directory and starts nginx on a free loopback port.
    pub fn start(&self, config: &NchanConfig) -> Result<ServerProc, Error> {
        let dir = std::env::temp_dir().join(format!(
            "sse-bench-nchan-{}-{}",
            std::process::id(),
            crate::load::now_us()
        ));
        std::fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, self.config_text(&dir, addr, config))?;
        let child = Command::new(&self.nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Server(format!("cannot start nginx: {e}")))?;
        let mut proc = ServerProc::from_child(child, addr, Some(dir.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline || proc.exited() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(Error::Server(format!(
                    "nginx did not listen on {addr}; its error log:\n{log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        proc.publish_path = Some("/pub/bench".into());
        Ok(proc)
    }

    fn config_text(&self, dir: &Path, addr: SocketAddr, config: &NchanConfig) -> String {
        let d = dir.display();
        let mut c = String::new();
        if let Some(m) = &self.module {
            let _ = writeln!(c, "load_module {};", m.display());
        }
        let _ = write!(
            c,
            "worker_processes 1;
worker_rlimit_nofile 200000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 100000; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_body_buffer_size 64k;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  tcp_nodelay on;
  nchan_message_buffer_length {buffer};
  nchan_message_timeout 1h;
  nchan_max_reserved_memory 256M;
  server {{
",
            buffer = config.buffer_length.max(1),
        );
        match &config.tls {
            None => {
                let _ = writeln!(c, "    listen {addr};");
            }
            Some((cert, key)) => {
                let _ = writeln!(
                    c,
                    "    listen {addr} ssl http2;\n    ssl_certificate {};\n    ssl_certificate_key {};",
                    cert.display(),
                    key.display()
                );
            }
        }
        c.push_str(
            "    location ~ ^/events/(\\w+)$ { nchan_subscriber eventsource; nchan_channel_id $1; }
    location ~ ^/pub/(\\w+)$ { nchan_publisher; nchan_channel_id $1; }
  }
}
",
        );
        c
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
