//! The mark: a small data object on the seal token beside the seal key, holding what
//! keyd last signed (its latest branch head). Whoever can write keyd's data directory
//! cannot roll the token back, so at start keyd compares its store with the mark and
//! refuses a store older than what it already signed.

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

use super::{Hsm, HsmError};

impl Hsm {
    fn mark_label(&self) -> Vec<u8> {
        format!("{}.mark", self.root_label()).into_bytes()
    }

    fn find_marks(&self) -> Result<Vec<ObjectHandle>, HsmError> {
        let template = [
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(self.mark_label()),
        ];
        self.session()
            .find_objects(&template)
            .map_err(HsmError::pkcs11("C_FindObjects"))
    }

    /// The values of the mark objects on the token (object `OBJECT.mark`, OBJECT being
    /// the seal key's label): none before the first write, one after, two if keyd
    /// stopped between creating a new mark and destroying the old one (the caller keeps
    /// the newer).
    pub fn read_marks(&self) -> Result<Vec<Vec<u8>>, HsmError> {
        let mut out = Vec::new();
        for handle in self.find_marks()? {
            let attrs = self
                .session()
                .get_attributes(handle, &[AttributeType::Value])
                .map_err(HsmError::pkcs11("C_GetAttributeValue(CKA_VALUE)"))?;
            out.extend(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// Replaces the mark: a new private token data object is created, then the old
    /// ones are destroyed (tokens such as SoftHSM2 do not let a data object's value
    /// change in place).
    pub fn write_mark(&self, value: &[u8]) -> Result<(), HsmError> {
        let old = self.find_marks()?;
        let template = [
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(self.mark_label()),
            Attribute::Application(b"keyd".to_vec()),
            Attribute::Value(value.to_vec()),
        ];
        self.session()
            .create_object(&template)
            .map_err(HsmError::pkcs11("C_CreateObject(CKO_DATA)"))?;
        for handle in old {
            self.session()
                .destroy_object(handle)
                .map_err(HsmError::pkcs11("C_DestroyObject"))?;
        }
        Ok(())
    }
}
