//! Python objects to JSON values and back, without JSON text in between: the bridge's
//! encoding of a callback's arguments (dicts, lists, strings, numbers, and Synapse's
//! immutable mappings and tuples, which the bridge's `plain` copies) is read as it is, and the
//! reply handed back as the dicts and lists `json.loads` would give. Text would cost a
//! `json.dumps` and a parse on the way in and a `json.loads` on the way out, the larger part
//! of a per-event callback's cost.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// How deep arguments may nest (serde_json's own limit, `glia_bus_schema::callbacks::MAX_DEPTH`).
pub const MAX_DEPTH: usize = glia_bus_schema::callbacks::MAX_DEPTH;

/// `obj` as a JSON value: mappings become objects (keys by `str`), strings, numbers, booleans
/// and `None` themselves, bytes a string (invalid UTF-8 replaced), other iterables arrays.
pub fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_json_at(obj, 0)
}

/// `obj` as a JSON value, `depth` levels below the arguments.
pub fn to_json_at(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err("arguments nest too deep"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            map.insert(key(&k)?, to_json_at(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(|v| to_json_at(&v, depth + 1)).collect();
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.cast::<PyInt>().is_ok() {
        return int(obj);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err("a float that JSON cannot hold"));
    }
    other(obj, depth)
}

/// The rarer kinds: tuples, bytes, other mappings and iterables.
fn other(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(|v| to_json_at(&v, depth + 1)).collect();
    }
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(Value::String(
            String::from_utf8_lossy(bytes.as_bytes()).into_owned(),
        ));
    }
    if let Ok(mapping) = obj.cast::<PyMapping>() {
        let mut map = Map::new();
        for item in mapping.items()?.iter() {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
            map.insert(key(&k)?, to_json_at(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    match obj.try_iter() {
        Ok(items) => items.map(|v| to_json_at(&v?, depth + 1)).collect(),
        Err(_) => Err(PyValueError::new_err(format!(
            "cannot send a {} to glia",
            obj.get_type().name()?
        ))),
    }
}

/// A mapping's key as JSON's: its `str`.
fn key(k: &Bound<'_, PyAny>) -> PyResult<String> {
    match k.cast::<PyString>() {
        Ok(s) => Ok(s.to_str()?.to_owned()),
        Err(_) => Ok(k.str()?.to_str()?.to_owned()),
    }
}

/// An int as JSON's: within i64 or u64, else refused (serde_json holds no more).
fn int(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Value::from(i));
    }
    obj.extract::<u64>()
        .map(Value::from)
        .map_err(|_| PyValueError::new_err("an integer beyond 64 bits"))
}

/// `value` as the Python objects `json.loads` gives for its text.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => number(py, n)?,
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

fn number<'py>(py: Python<'py>, n: &Number) -> PyResult<Bound<'py, PyAny>> {
    if let Some(i) = n.as_i64() {
        return Ok(i.into_pyobject(py)?.into_any());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into_pyobject(py)?.into_any());
    }
    Ok(PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any())
}
