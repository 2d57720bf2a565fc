//! A serde decoder over Python objects: a callback's arguments (the bridge's encoding, as
//! dicts, lists and strings) are decoded straight into the typed request, with no JSON values
//! built between, which cost an allocation per string and map entry and a second copy into the
//! request. It reads each object as `pyjson::to_json` reads it, and refuses what that refuses:
//! whatever it decodes, the JSON value `to_json` gives decodes to the same request. It also
//! refuses what it does not read the same way for certain (iterables other than lists and
//! tuples, which reading would consume); the caller then takes `to_json`'s path, which names
//! the bad field of bad arguments.

use crate::pyjson::{to_json_at, MAX_DEPTH};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Error;

/// One Python object to decode, `depth` levels below the arguments (as `to_json` counts).
pub struct PyDe<'py> {
    obj: Bound<'py, PyAny>,
    depth: usize,
}

impl<'py> PyDe<'py> {
    /// A decoder of the arguments `obj`.
    pub fn new(obj: &Bound<'py, PyAny>) -> Self {
        PyDe {
            obj: obj.clone(),
            depth: 0,
        }
    }

    fn below(obj: Bound<'py, PyAny>, depth: usize) -> Self {
        PyDe {
            obj,
            depth: depth + 1,
        }
    }

    fn check_depth(&self) -> Result<(), Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom("arguments nest too deep"));
        }
        Ok(())
    }
}

fn py_err(e: PyErr) -> Error {
    de::Error::custom(e)
}

/// A Python object as `to_json_at` reads it: the kind it tests it for first, in its order.
enum Read<'a, 'py> {
    Str(&'a Bound<'py, PyString>),
    Dict(&'a Bound<'py, PyDict>),
    List(&'a Bound<'py, PyList>),
    None,
    Bool(bool),
    Int,
    Float(f64),
    Tuple(&'a Bound<'py, PyTuple>),
    Bytes(&'a Bound<'py, PyBytes>),
    Mapping(&'a Bound<'py, PyMapping>),
}

/// The kinds of JSON value `to_json` makes.
#[derive(Clone, Copy, PartialEq)]
enum Json {
    String,
    Object,
    Array,
    Null,
    Bool,
    Number,
}

impl<'a, 'py> Read<'a, 'py> {
    /// How `to_json_at` reads `obj`; an error for what it refuses, and for other iterables,
    /// which reading would consume.
    fn of(obj: &'a Bound<'py, PyAny>) -> Result<Self, Error> {
        Ok(if let Ok(s) = obj.cast::<PyString>() {
            Read::Str(s)
        } else if let Ok(dict) = obj.cast::<PyDict>() {
            Read::Dict(dict)
        } else if let Ok(list) = obj.cast::<PyList>() {
            Read::List(list)
        } else if obj.is_none() {
            Read::None
        } else if let Ok(b) = obj.cast::<PyBool>() {
            Read::Bool(b.is_true())
        } else if obj.cast::<PyInt>().is_ok() {
            Read::Int
        } else if let Ok(f) = obj.cast::<PyFloat>() {
            Read::Float(f.value())
        } else if let Ok(tuple) = obj.cast::<PyTuple>() {
            Read::Tuple(tuple)
        } else if let Ok(bytes) = obj.cast::<PyBytes>() {
            Read::Bytes(bytes)
        } else if let Ok(mapping) = obj.cast::<PyMapping>() {
            Read::Mapping(mapping)
        } else {
            return Err(de::Error::custom("not a kind read without consuming it"));
        })
    }

    /// The kind of JSON value `to_json` makes of it.
    fn json(&self) -> Json {
        match self {
            Read::Str(_) | Read::Bytes(_) => Json::String,
            Read::Dict(_) | Read::Mapping(_) => Json::Object,
            Read::List(_) | Read::Tuple(_) => Json::Array,
            Read::None => Json::Null,
            Read::Bool(_) => Json::Bool,
            Read::Int | Read::Float(_) => Json::Number,
        }
    }
}

impl PyDe<'_> {
    /// Visits the object as the JSON value `to_json` makes of it.
    fn visit<'de, V: Visitor<'de>>(
        &self,
        read: Read<'_, '_>,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let depth = self.depth;
        match read {
            Read::Str(s) => visitor.visit_str(s.to_str().map_err(py_err)?),
            Read::Dict(dict) => {
                let items = dict.iter().map(Ok::<_, PyErr>);
                visitor.visit_map(Entries::new(items, dict.len(), depth))
            }
            Read::List(list) => visitor.visit_seq(Items::new(list.iter(), list.len(), depth)),
            Read::None => visitor.visit_unit(),
            Read::Bool(b) => visitor.visit_bool(b),
            Read::Int => int(&self.obj, visitor),
            // serde_json's values hold finite floats only.
            Read::Float(v) if v.is_finite() => visitor.visit_f64(v),
            Read::Float(_) => Err(de::Error::custom("a float that JSON cannot hold")),
            Read::Tuple(tuple) => visitor.visit_seq(Items::new(tuple.iter(), tuple.len(), depth)),
            Read::Bytes(bytes) => {
                visitor.visit_string(String::from_utf8_lossy(bytes.as_bytes()).into_owned())
            }
            Read::Mapping(mapping) => {
                let items = mapping.items().map_err(py_err)?;
                let len = items.len();
                let pairs = items.iter().map(|item| item.extract());
                visitor.visit_map(Entries::new(pairs, len, depth))
            }
        }
    }

    /// Visits the object when `to_json` makes one of the kinds `accepted` of it, else an
    /// error: a JSON value's typed `deserialize_*` refuses the other kinds before its visitor
    /// sees them (a map's visitor would take a null as an empty map).
    fn visit_if<'de, V: Visitor<'de>>(
        self,
        accepted: &[Json],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.check_depth()?;
        let read = Read::of(&self.obj)?;
        if !accepted.contains(&read.json()) {
            return Err(de::Error::custom("not the kind of value asked for"));
        }
        self.visit(read, visitor)
    }
}

/// `deserialize_*` methods that take the JSON kinds given, as a JSON value's do.
macro_rules! typed {
    ($($method:ident)* => $accepted:expr) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.visit_if($accepted, visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for PyDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.check_depth()?;
        let read = Read::of(&self.obj)?;
        self.visit(read, visitor)
    }

    typed!(deserialize_bool => &[Json::Bool]);
    typed!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 => &[Json::Number]
    );
    typed!(
        deserialize_char deserialize_str deserialize_string deserialize_identifier
        => &[Json::String]
    );
    typed!(deserialize_bytes deserialize_byte_buf => &[Json::String, Json::Array]);
    typed!(deserialize_unit => &[Json::Null]);
    typed!(deserialize_seq => &[Json::Array]);
    typed!(deserialize_map => &[Json::Object]);

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_if(&[Json::Null], visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_if(&[Json::Array], visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_if(&[Json::Array], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_if(&[Json::Object, Json::Array], visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.check_depth()?;
        if self.obj.is_none() {
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Rare and small (a presence, a medium): read as a JSON value, which decodes enums as
        // the JSON path does.
        let value = to_json_at(&self.obj, self.depth).map_err(py_err)?;
        value.deserialize_enum(name, variants, visitor)
    }

    // An ignored value is read all the same, so that what `to_json` refuses anywhere in the
    // arguments is refused here too.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }
}

/// An int as `to_json` reads it: a non-negative one as unsigned, as serde_json's values do.
fn int<'de, V: Visitor<'de>>(obj: &Bound<'_, PyAny>, visitor: V) -> Result<V::Value, Error> {
    if let Ok(i) = obj.extract::<i64>() {
        return match u64::try_from(i) {
            Ok(u) => visitor.visit_u64(u),
            Err(_) => visitor.visit_i64(i),
        };
    }
    match obj.extract::<u64>() {
        Ok(u) => visitor.visit_u64(u),
        Err(_) => Err(de::Error::custom("an integer beyond 64 bits")),
    }
}

/// A list's or tuple's items.
struct Items<I> {
    items: I,
    len: usize,
    depth: usize,
}

impl<I> Items<I> {
    fn new(items: I, len: usize, depth: usize) -> Self {
        Items { items, len, depth }
    }
}

impl<'de, 'py, I: Iterator<Item = Bound<'py, PyAny>>> SeqAccess<'de> for Items<I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(item) => seed.deserialize(PyDe::below(item, self.depth)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

/// A dict's or mapping's entries.
struct Entries<'py, I> {
    items: I,
    len: usize,
    depth: usize,
    value: Option<Bound<'py, PyAny>>,
}

impl<'py, I> Entries<'py, I> {
    fn new(items: I, len: usize, depth: usize) -> Self {
        Entries {
            items,
            len,
            depth,
            value: None,
        }
    }
}

type Entry<'py> = PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

impl<'de, 'py, I: Iterator<Item = Entry<'py>>> MapAccess<'de> for Entries<'py, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.items.next() else {
            return Ok(None);
        };
        let (key, value) = entry.map_err(py_err)?;
        self.value = Some(value);
        seed.deserialize(Key(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(PyDe::below(value, self.depth))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

/// A mapping's key, read as JSON's: its `str`.
struct Key<'py>(Bound<'py, PyAny>);

impl<'de> Deserializer<'de> for Key<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.cast::<PyString>() {
            Ok(s) => visitor.visit_str(s.to_str().map_err(py_err)?),
            Err(_) => visitor.visit_str(self.0.str().map_err(py_err)?.to_str().map_err(py_err)?),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}
