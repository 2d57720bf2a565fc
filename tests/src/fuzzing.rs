//! The bodies of the fuzz targets: `fuzz/fuzz_targets/*.rs` (cargo fuzz) call them with
//! libFuzzer's inputs, and `tests/tests/fuzz_corpus.rs` replays the committed corpus through
//! them on stable Rust, so the two always exercise the same code. Each feeds one input to a
//! decoder glia runs on untrusted bytes, or to config loading, and asserts what must hold
//! for any input; a panic is a finding.

use glia_bus_schema::{
    Callback, CallbackRequest, DispatchReply, Invocation, InvocationReply, InvocationResult,
    ModuleAnswer,
};

/// A fuzz target's body: one input in, a panic for a finding.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (as `fuzz/Cargo.toml` and `fuzz/corpus/` name them).
pub const TARGETS: &[(&str, Target)] = &[
    ("callback_args", callback_args),
    ("http_antispam", http_antispam),
    ("invocation", invocation),
    ("reply", reply),
    ("config", config),
];

/// The callback an input's first byte picks, and the rest of the input.
fn split(data: &[u8]) -> Option<(Callback, &[u8])> {
    let (first, rest) = data.split_first()?;
    Some((
        Callback::ALL[usize::from(*first) % Callback::ALL.len()],
        rest,
    ))
}

/// A callback's arguments as the HTTP API and the NATS ingress decode them
/// (`CallbackRequest::from_json_slice`): the first byte picks the callback, the rest is the
/// body. What decodes must encode, and decode again as the same callback (the coordinator
/// re-encodes requests for modules on NATS).
pub fn callback_args(data: &[u8]) {
    let Some((callback, body)) = split(data) else {
        return;
    };
    let Ok(request) = CallbackRequest::from_json_slice(callback, body) else {
        return;
    };
    assert_eq!(request.callback(), callback);
    let encoded = serde_json::to_vec(&request).expect("a decoded request encodes");
    let again: CallbackRequest =
        serde_json::from_slice(&encoded).expect("an encoded request decodes");
    assert_eq!(again.callback(), callback);
}

/// A synapse-http-antispam body as glia's ingress for that module decodes it
/// (`http_antispam::decode`): the first byte picks the path's name (one of the module's
/// callbacks glia has, its ping, or one glia does not know), the rest is the body. A callback
/// that decodes must encode and decode again as the same callback.
pub fn http_antispam(data: &[u8]) {
    use glia_bus_schema::http_antispam::{decode, Call, CALLBACKS, PING};
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let names = CALLBACKS.len() + 2;
    let name = match usize::from(*first) % names {
        i if i < CALLBACKS.len() => CALLBACKS[i].name(),
        i if i == CALLBACKS.len() => PING,
        _ => "accept_make_join",
    };
    let Ok(Call::Callback(request)) = decode(name, body) else {
        return;
    };
    assert_eq!(request.callback().name(), name);
    let encoded = serde_json::to_vec(&request).expect("a decoded request encodes");
    let again: CallbackRequest =
        serde_json::from_slice(&encoded).expect("an encoded request decodes");
    assert_eq!(again.callback(), request.callback());
}

/// An invocation as `glia worker` decodes one from NATS (`Invocation::from_json_slice`):
/// what serde's derived decoder decodes, it decodes to the same value; what it decodes
/// beyond that (text in ignored values the derived decoder refuses, deeper nesting) is a
/// valid invocation the derived decoder takes once re-encoded. What decodes must re-encode
/// to an invocation of the same callback.
pub fn invocation(data: &[u8]) {
    let fast = Invocation::from_json_slice(data);
    let derived = serde_json::from_slice::<Invocation>(data);
    match (&fast, &derived) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the worker's decoder and serde's disagree"),
        (Err(_), Err(_)) => {}
        (Ok(a), Err(_)) => {
            let encoded = serde_json::to_vec(a).expect("a decoded invocation encodes");
            let again: Invocation =
                serde_json::from_slice(&encoded).expect("what the worker decodes is valid");
            assert_eq!(&again, a);
        }
        (Err(e), Ok(_)) => panic!("the worker refuses what serde's decoder takes: {e}"),
    }
    let Ok(invocation) = fast else {
        return;
    };
    let encoded = serde_json::to_vec(&invocation).expect("a decoded invocation encodes");
    let again: Invocation = serde_json::from_slice(&encoded).expect("an encoded one decodes");
    assert_eq!(again.request.callback(), invocation.request.callback());
    assert_eq!(again.request_id, invocation.request_id);
}

/// A module's reply as the coordinator decodes one from NATS (`InvocationReply`), and, with
/// the first byte picking the callback, the rest as a module's answer (`ModuleAnswer`) and
/// as the coordinator's reply (`DispatchReply`, what clients decode).
pub fn reply(data: &[u8]) {
    if let Ok(reply) = serde_json::from_slice::<InvocationReply>(data) {
        let encoded = serde_json::to_vec(&reply).expect("a decoded reply encodes");
        let again: InvocationReply =
            serde_json::from_slice(&encoded).expect("an encoded reply decodes");
        if let (InvocationResult::Answer(a), InvocationResult::Answer(b)) =
            (&reply.result, &again.result)
        {
            assert_eq!(a.callback(), b.callback());
        }
    }
    let Some((callback, rest)) = split(data) else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    if let Ok(answer) = ModuleAnswer::from_json(callback, value.clone()) {
        assert_eq!(answer.callback(), callback);
        let encoded = serde_json::to_value(&answer).expect("a decoded answer encodes");
        let again: ModuleAnswer = serde_json::from_value(encoded).expect("and decodes");
        assert_eq!(again.callback(), callback);
    }
    if let Ok(reply) = DispatchReply::from_json(callback, value) {
        assert_eq!(reply.callback(), callback);
        let _ = reply.summary();
    }
}

/// Config text as `glia serve`, `glia worker` and `glia check-config` load it (the built-in
/// modules and the test modules). Every error must name the file and, when the document has
/// any node, a line and column.
pub fn config(data: &[u8]) {
    // A config file that is not UTF-8 is refused before it is parsed.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(error) = glia_runtime::app::load_str(text, "fuzz.yaml", &crate::registry()) else {
        return;
    };
    let shown = error.to_string();
    assert!(shown.starts_with("fuzz.yaml"), "{shown}");
    assert!(
        error.position.is_some() || !has_node(text),
        "no position: {shown}\n--- for ---\n{text}"
    );
}

/// Whether YAML `text` holds a node (an empty or comment-only document holds none).
fn has_node(text: &str) -> bool {
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    while let Some(Ok((event, _))) = parser.next_event() {
        if matches!(
            event,
            saphyr_parser::Event::Scalar(..)
                | saphyr_parser::Event::MappingStart(..)
                | saphyr_parser::Event::SequenceStart(..)
                | saphyr_parser::Event::Alias(..)
        ) {
            return true;
        }
    }
    false
}
