//! `bus.url`: the NATS servers to connect to — one URL, or a cluster's URLs as a YAML list or
//! a comma-separated string (as the NATS tools take them). Checked when the config loads,
//! with the parser the client connects with, so `check-config` and `serve` agree.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

/// The servers of `bus.url`, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsUrls {
    /// Each URL, trimmed.
    pub urls: Vec<String>,
    /// Whether they were written as a YAML list (errors then name the item).
    pub listed: bool,
}

impl NatsUrls {
    /// One server.
    pub fn one(url: impl Into<String>) -> NatsUrls {
        NatsUrls {
            urls: vec![url.into()],
            listed: false,
        }
    }

    /// Each URL as the client will use it; the error gives the index of the bad one (when
    /// there is one) and what is wrong.
    pub fn server_addrs(&self) -> Result<Vec<async_nats::ServerAddr>, (Option<usize>, String)> {
        if self.urls.is_empty() {
            return Err((
                None,
                "no NATS server: give a URL such as \"nats://127.0.0.1:4222\", or a list of a cluster's URLs".into(),
            ));
        }
        self.urls
            .iter()
            .enumerate()
            .map(|(i, url)| parse(url).map_err(|m| (Some(i), m)))
            .collect()
    }
}

/// One URL, as async-nats parses it, limited to the schemes glia's client speaks.
fn parse(url: &str) -> Result<async_nats::ServerAddr, String> {
    if url.is_empty() {
        return Err("an empty NATS server URL".into());
    }
    let scheme = url.split_once("://").map_or("nats", |(scheme, _)| scheme);
    if !matches!(scheme, "nats" | "tls") {
        return Err(format!(
            "{url:?}: glia connects to NATS with nats:// or tls:// URLs"
        ));
    }
    let addr = async_nats::ServerAddr::from_str(url).map_err(|e| format!("{url:?}: {e}"))?;
    if addr.host().is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(addr)
}

impl fmt::Display for NatsUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.urls.join(","))
    }
}

impl<'de> Deserialize<'de> for NatsUrls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            List(Vec<String>),
        }
        match Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a URL, a comma-separated list of URLs, or a YAML list of URLs",
            )
        })? {
            Written::One(text) => Ok(NatsUrls {
                urls: text.split(',').map(|u| u.trim().to_owned()).collect(),
                listed: false,
            }),
            Written::List(urls) => Ok(NatsUrls {
                urls: urls.into_iter().map(|u| u.trim().to_owned()).collect(),
                listed: true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(value: serde_json::Value) -> NatsUrls {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn one_url_a_comma_separated_string_or_a_list() {
        assert_eq!(urls("nats://a:4222".into()).urls, ["nats://a:4222"], "one");
        let written = urls(" nats://a:1 , nats://b:2,tls://c:3 ".into());
        assert_eq!(written.urls, ["nats://a:1", "nats://b:2", "tls://c:3"]);
        assert!(!written.listed);
        let listed = urls(serde_json::json!(["nats://a:1", "b:2"]));
        assert!(listed.listed);
        let addrs = listed.server_addrs().unwrap();
        assert_eq!((addrs[1].host(), addrs[1].port()), ("b", 2));
        assert_eq!(listed.to_string(), "nats://a:1,b:2");
        assert!(serde_json::from_value::<NatsUrls>(serde_json::json!(4222)).is_err());
    }

    #[test]
    fn bad_urls_are_named_by_index() {
        for (written, index, says) in [
            (serde_json::json!([]), None, "no NATS server"),
            (serde_json::json!("nats://a:1,"), Some(1), "empty"),
            (
                serde_json::json!(["nats://a:1", "nats://b:99999"]),
                Some(1),
                "b:99999",
            ),
            (
                serde_json::json!("http://a:1"),
                Some(0),
                "nats:// or tls://",
            ),
            (serde_json::json!("ws://a:1"), Some(0), "nats:// or tls://"),
            (serde_json::json!("nats://:4222"), Some(0), "nats://:4222"),
        ] {
            let (at, message) = urls(written.clone()).server_addrs().unwrap_err();
            assert_eq!(at, index, "{written}: {message}");
            assert!(message.contains(says), "{written}: {message}");
        }
    }
}
