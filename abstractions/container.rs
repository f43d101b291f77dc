// SPDX-License-Identifier: GPL-2.0

//! The struct an embedded C object sits in (C's `container_of`), for the
//! callbacks that get only a pointer to the embedded object: one trait for
//! every embedded kind (work items, notifiers, the balloon page list, page
//! reporting), as upstream's `HasWork` and `impl_has_work!` for work items.

/// `Self` has a field of type `F` at [`HasField::OFFSET`]; `ID` tells apart
/// several fields of one type.
///
/// # Safety
///
/// `OFFSET` must be the byte offset of a field of type `F` in `Self`. Use
/// [`impl_has_field!`], which computes it from the field.
pub(crate) unsafe trait HasField<F, const ID: u64 = 0>: Sized {
    /// Offset of the field.
    const OFFSET: usize;

    /// The `Self` that `field` is the field of.
    ///
    /// # Safety
    ///
    /// `field` must point to the `F` field at `OFFSET` of a `Self` that is
    /// alive for `'a`.
    unsafe fn container_of<'a>(field: *const F) -> &'a Self {
        // SAFETY: The caller guarantees that `field` is the field at
        // `OFFSET` of a live `Self`, so going back `OFFSET` bytes stays in
        // that `Self` and yields its address.
        unsafe { &*field.cast::<u8>().sub(Self::OFFSET).cast::<Self>() }
    }
}

/// Implements [`HasField<$field_ty, $id>`] for `$ty` whose field (path)
/// `$field` has the type `$field_ty`.
#[macro_export]
macro_rules! impl_has_field {
    ($ty:ty, $field_ty:ty, $id:literal, $($field:ident).+) => {
        // SAFETY: The offset is that of the field, whose type the function
        // below checks.
        unsafe impl $crate::abstractions::container::HasField<$field_ty, $id> for $ty {
            const OFFSET: usize = {
                #[allow(dead_code)]
                fn check(t: &$ty) -> &$field_ty {
                    &t.$($field).+
                }
                core::mem::offset_of!($ty, $($field).+)
            };
        }
    };
}
