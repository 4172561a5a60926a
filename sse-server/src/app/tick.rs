use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sse_proto::Event;
use sse_server::Hub;

/// Publishes a `tick` event with the UTC time on the `demo` channel every second, so that a new user
/// sees live events on the demo page at once.
pub(crate) async fn run(hub: Hub) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        every.tick().await;
        n += 1;
        let data = format!("{} (tick {n})", utc_now());
        let event = match Event::builder().event("tick").data(data).build() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the demo tick");
                return;
            }
        };
        if let Err(e) = hub.publish("demo", event).await {
            tracing::debug!(error = %e, "demo clock stopped");
            return;
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` without a date crate (civil-from-days, Howard Hinnant's algorithm).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
