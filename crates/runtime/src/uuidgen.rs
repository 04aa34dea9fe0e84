//! A fresh UUID, for definitions that lack one.

use teamvirt_conf::model::Uuid;

/// A random (version 4) UUID.
pub fn random_uuid() -> Uuid {
    Uuid(uuid::Uuid::new_v4().into_bytes())
}
