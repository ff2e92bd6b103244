//! Job arguments to payload bytes: JSON, refusing values JSON cannot hold
//! faithfully (NaN and infinities, which serde_json would write as `null`).

use serde::Serialize;

use crate::api::error::Error;

/// Serializes arguments, refusing values JSON cannot hold faithfully.
///
/// serde_json writes NaN and ±infinity as `null` without an error, so a job
/// would silently run with other arguments than it was given (or fail to
/// decode much later). A first pass walks the arguments and refuses them.
/// `params` names the elements of arguments stored by position, so that the
/// refusal says `.price` rather than `[2]`.
pub(crate) fn encode_args<A: Serialize + ?Sized>(
    task: &str,
    params: Option<&[&str]>,
    args: &A,
) -> Result<Vec<u8>, Error> {
    let serialize_error = |reason: String| Error::Serialize {
        task: task.to_string(),
        reason,
    };
    finite::check(args, params.unwrap_or_default()).map_err(serialize_error)?;
    serde_json::to_vec(args).map_err(|e| serialize_error(e.to_string()))
}

/// A serializer that writes nothing and fails on the first non-finite float,
/// naming where it is (`.field[3]`).
mod finite {
    use std::fmt::{self, Display};

    use serde::ser::{self, Serialize};

    #[derive(Debug)]
    pub(super) struct Refused(pub(super) String);

    impl Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Refused {}

    impl ser::Error for Refused {
        fn custom<T: Display>(msg: T) -> Self {
            Refused(msg.to_string())
        }
    }

    /// `Ok` when every float in `value` is finite; else what and where.
    /// `names` names the top-level elements of a sequence (the arguments).
    pub(super) fn check<T: Serialize + ?Sized>(value: &T, names: &[&str]) -> Result<(), String> {
        let mut checker = Checker {
            path: Vec::new(),
            names,
        };
        value.serialize(&mut checker).map_err(|e| e.0)
    }

    struct Checker<'n> {
        path: Vec<String>,
        names: &'n [&'n str],
    }

    impl Checker<'_> {
        fn float(&self, value: f64) -> Result<(), Refused> {
            if value.is_finite() {
                return Ok(());
            }
            let at = if self.path.is_empty() {
                "the arguments".to_string()
            } else {
                format!("`{}`", self.path.concat())
            };
            Err(Refused(format!(
                "non-finite float {value} at {at}: JSON cannot hold NaN or infinity (serde_json would silently store null)"
            )))
        }

        fn nested<T: Serialize + ?Sized>(&mut self, seg: String, v: &T) -> Result<(), Refused> {
            self.path.push(seg);
            let r = v.serialize(&mut *self);
            self.path.pop();
            r
        }
    }

    /// Map keys are serialized as text; JSON keys never hold floats faithfully anyway.
    fn key_text<T: Serialize + ?Sized>(key: &T) -> String {
        serde_json::to_string(key).unwrap_or_else(|_| "?".to_string())
    }

    macro_rules! ok {
        ($($f:ident($t:ty)),* $(,)?) => {
            $(fn $f(self, _v: $t) -> Result<(), Refused> { Ok(()) })*
        };
    }

    impl<'a, 'n> ser::Serializer for &'a mut Checker<'n> {
        type Ok = ();
        type Error = Refused;
        type SerializeSeq = Compound<'a, 'n>;
        type SerializeTuple = Compound<'a, 'n>;
        type SerializeTupleStruct = Compound<'a, 'n>;
        type SerializeTupleVariant = Compound<'a, 'n>;
        type SerializeMap = Compound<'a, 'n>;
        type SerializeStruct = Compound<'a, 'n>;
        type SerializeStructVariant = Compound<'a, 'n>;

        ok!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_i128(i128),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_u128(u128),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
        );

        fn serialize_f32(self, v: f32) -> Result<(), Refused> {
            self.float(f64::from(v))
        }
        fn serialize_f64(self, v: f64) -> Result<(), Refused> {
            self.float(v)
        }
        fn serialize_none(self) -> Result<(), Refused> {
            Ok(())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Refused> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), Refused> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Refused> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<(), Refused> {
            Ok(())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<(), Refused> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            v: &T,
        ) -> Result<(), Refused> {
            self.nested(format!(".{variant}"), v)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a, 'n>, Refused> {
            Ok(Compound::new(self))
        }
        fn serialize_tuple(self, _: usize) -> Result<Compound<'a, 'n>, Refused> {
            Ok(Compound::new(self))
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Compound<'a, 'n>, Refused> {
            Ok(Compound::new(self))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Compound<'a, 'n>, Refused> {
            self.path.push(format!(".{variant}"));
            Ok(Compound::variant(self))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a, 'n>, Refused> {
            Ok(Compound::new(self))
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'n>, Refused> {
            Ok(Compound::new(self))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Compound<'a, 'n>, Refused> {
            self.path.push(format!(".{variant}"));
            Ok(Compound::variant(self))
        }
    }

    /// Walks the elements of a sequence, map or struct, tracking the path.
    pub(super) struct Compound<'a, 'n> {
        checker: &'a mut Checker<'n>,
        index: usize,
        key: String,
        pops: bool,
    }

    impl<'a, 'n> Compound<'a, 'n> {
        fn new(checker: &'a mut Checker<'n>) -> Self {
            Compound {
                checker,
                index: 0,
                key: String::new(),
                pops: false,
            }
        }

        fn variant(checker: &'a mut Checker<'n>) -> Self {
            Compound {
                pops: true,
                ..Compound::new(checker)
            }
        }

        fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            // An argument stored by position is named like a field.
            let name = if self.checker.path.is_empty() {
                self.checker.names.get(self.index)
            } else {
                None
            };
            let seg = match name {
                Some(name) => format!(".{name}"),
                None => format!("[{}]", self.index),
            };
            self.index += 1;
            self.checker.nested(seg, v)
        }

        fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) -> Result<(), Refused> {
            self.checker.nested(format!(".{name}"), v)
        }

        fn done(self) -> Result<(), Refused> {
            if self.pops {
                self.checker.path.pop();
            }
            Ok(())
        }
    }

    impl ser::SerializeSeq for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            self.element(v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }

    impl ser::SerializeTuple for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            self.element(v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }

    impl ser::SerializeTupleStruct for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            self.element(v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }

    impl ser::SerializeTupleVariant for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            self.element(v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }

    impl ser::SerializeMap for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Refused> {
            self.key = key_text(key);
            Ok(())
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Refused> {
            let seg = format!("[{}]", self.key);
            self.checker.nested(seg, v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }

    impl ser::SerializeStruct for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            name: &'static str,
            v: &T,
        ) -> Result<(), Refused> {
            self.field(name, v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }

    impl ser::SerializeStructVariant for Compound<'_, '_> {
        type Ok = ();
        type Error = Refused;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            name: &'static str,
            v: &T,
        ) -> Result<(), Refused> {
            self.field(name, v)
        }
        fn end(self) -> Result<(), Refused> {
            self.done()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_are_refused_with_their_path() {
        #[derive(Serialize)]
        struct Inner {
            values: Vec<f64>,
        }
        #[derive(Serialize)]
        struct Args {
            name: String,
            inner: Inner,
            single: f32,
        }
        let ok = Args {
            name: "x".into(),
            inner: Inner {
                values: vec![1.0, f64::MAX],
            },
            single: f32::MIN_POSITIVE,
        };
        assert!(encode_args("t", None, &ok).is_ok());
        let nan = Args {
            inner: Inner {
                values: vec![1.0, f64::NAN],
            },
            ..ok
        };
        let err = encode_args("t", None, &nan)
            .expect_err("NaN refused")
            .to_string();
        assert!(
            err.contains("NaN") && err.contains("`.inner.values[1]`"),
            "{err}"
        );
        let map: std::collections::BTreeMap<&str, f32> = [("k", f32::INFINITY)].into();
        let err = encode_args("t", None, &map)
            .expect_err("inf refused")
            .to_string();
        assert!(err.contains("inf") && err.contains("[\"k\"]"), "{err}");
        assert!(encode_args("t", None, &serde_json::json!({"a": [1.5, null]})).is_ok());
        assert!(encode_args("t", None, &f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn arguments_stored_by_position_are_named_in_refusals() {
        let args = ("x", vec![1.0, f64::NAN], f64::INFINITY);
        let names: &[&str] = &["name", "values", "price"];
        let err = encode_args("t", Some(names), &args)
            .expect_err("NaN refused")
            .to_string();
        assert!(err.contains("`.values[1]`"), "{err}");
        let err = encode_args("t", Some(names), &("x", vec![1.0], f64::INFINITY))
            .expect_err("inf refused")
            .to_string();
        assert!(err.contains("`.price`"), "{err}");
        // Without names, by index.
        let err = encode_args("t", None, &args)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("`[1][1]`"), "{err}");
    }
}
