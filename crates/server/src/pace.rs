//! Request bodies must keep a minimum pace: after a grace period, each second must have
//! brought at least `bytes_per_second_min` bytes on average, or the body fails as too slow.
//! An idle timeout alone lets a client hold a connection for ever by sending a byte now and
//! then; a minimum pace does not, and still lets large uploads take as long as they need.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// What a body must keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub grace: Duration,
    pub bytes_per_second_min: u64,
}

impl Pace {
    /// How long a body that has brought `received` bytes may take in all, from its first read.
    pub fn allowed(&self, received: u64) -> Duration {
        let rate = self.bytes_per_second_min.max(1);
        let earned = Duration::from_millis(received.saturating_mul(1000) / rate);
        self.grace.saturating_add(earned)
    }
}

/// Why a body failed: it came too slowly.
#[derive(Debug)]
pub struct TooSlow(pub Pace);

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TOO_SLOW}: fewer than {} bytes per second after the first {} s",
            self.0.bytes_per_second_min,
            self.0.grace.as_secs()
        )
    }
}

impl std::error::Error for TooSlow {}

pub(crate) const TOO_SLOW: &str = "the request body arrived too slowly";

/// Whether an error (or one it wraps) is a body that came too slowly. Layers in between
/// (decompression) may keep only the text.
pub fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<TooSlow>() || error.to_string().contains(TOO_SLOW) {
            return true;
        }
        current = error.source();
    }
    false
}

/// A body held to a [`Pace`], timed from its first read (a handler that reads late, after a
/// database transaction, does not count against the client).
pub struct PacedBody<B> {
    body: B,
    pace: Pace,
    started: Option<tokio::time::Instant>,
    received: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> PacedBody<B> {
    pub fn new(body: B, pace: Pace) -> Self {
        PacedBody { body, pace, started: None, received: 0, timer: None }
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let started = *this.started.get_or_insert_with(tokio::time::Instant::now);
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = started + this.pace.allowed(this.received);
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow(this.pace))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_byte_buys_time_after_the_grace() {
        let pace = Pace { grace: Duration::from_secs(10), bytes_per_second_min: 1000 };
        assert_eq!(pace.allowed(0), Duration::from_secs(10));
        assert_eq!(pace.allowed(500), Duration::from_millis(10_500));
        assert_eq!(pace.allowed(1_000_000), Duration::from_secs(1010));
        assert!(pace.allowed(u64::MAX) > Duration::from_secs(1 << 40), "no overflow");
        let zero = Pace { grace: Duration::ZERO, bytes_per_second_min: 0 };
        assert_eq!(zero.allowed(3), Duration::from_secs(3), "a zero rate counts as one byte per second");
    }

    #[test]
    fn a_too_slow_error_is_recognised_through_wrappers() {
        let slow = TooSlow(Pace { grace: Duration::from_secs(1), bytes_per_second_min: 1 });
        assert!(is_too_slow(&slow));
        let wrapped = std::io::Error::other(slow.to_string());
        assert!(is_too_slow(&wrapped));
        assert!(!is_too_slow(&std::io::Error::other("connection reset")));
    }

    #[tokio::test]
    async fn a_trickling_body_fails() {
        let pace = Pace { grace: Duration::from_millis(500), bytes_per_second_min: 100 };
        let (mut sender, receiver) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let mut paced = PacedBody::new(axum::body::Body::from_stream(receiver), pace);
        tokio::spawn(async move {
            use futures::SinkExt;
            // A byte every 100 ms: ten bytes a second, a tenth of the pace.
            while sender.send(Ok(Bytes::from_static(b"x"))).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let error = loop {
            match futures::future::poll_fn(|cx| Pin::new(&mut paced).poll_frame(cx)).await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => break error,
                None => panic!("the body ended"),
            }
        };
        assert!(is_too_slow(&*error), "{error}");
    }
}
