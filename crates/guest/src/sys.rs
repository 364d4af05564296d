//! Raw imports on wasm32, or the in-process environment of [`crate::native`] elsewhere.

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "idlegrid")]
    unsafe extern "C" {
        pub fn params_len() -> i32;
        pub fn params_read(dst: *mut u8, len: i32) -> i32;
        pub fn element_len(name: *const u8, name_len: i32) -> i64;
        pub fn element_read(name: *const u8, name_len: i32, offset: i64, dst: *mut u8, len: i32) -> i32;
        pub fn checkpoint_len() -> i64;
        pub fn checkpoint_read(dst: *mut u8, len: i32) -> i32;
        pub fn checkpoint_save(src: *const u8, len: i32) -> i32;
        pub fn status_set(src: *const u8, len: i32, progress: f32) -> i32;
        pub fn result_set(src: *const u8, len: i32) -> i32;
        pub fn fail(src: *const u8, len: i32) -> i32;
        pub fn control() -> i32;
    }
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::imports as raw;

    // SAFETY (all functions below): the host only reads or writes within the (pointer, length)
    // ranges passed, which come from live Rust slices.
    pub fn params_len() -> i32 {
        unsafe { raw::params_len() }
    }
    pub fn params_read(buf: &mut [u8]) -> i32 {
        unsafe { raw::params_read(buf.as_mut_ptr(), buf.len() as i32) }
    }
    pub fn element_len(name: &str) -> i64 {
        unsafe { raw::element_len(name.as_ptr(), name.len() as i32) }
    }
    pub fn element_read(name: &str, offset: i64, buf: &mut [u8]) -> i32 {
        unsafe { raw::element_read(name.as_ptr(), name.len() as i32, offset, buf.as_mut_ptr(), buf.len() as i32) }
    }
    pub fn checkpoint_len() -> i64 {
        unsafe { raw::checkpoint_len() }
    }
    pub fn checkpoint_read(buf: &mut [u8]) -> i32 {
        unsafe { raw::checkpoint_read(buf.as_mut_ptr(), buf.len() as i32) }
    }
    pub fn checkpoint_save(data: &[u8]) -> i32 {
        unsafe { raw::checkpoint_save(data.as_ptr(), data.len() as i32) }
    }
    pub fn status_set(data: &[u8], progress: f32) -> i32 {
        unsafe { raw::status_set(data.as_ptr(), data.len() as i32, progress) }
    }
    pub fn result_set(data: &[u8]) -> i32 {
        unsafe { raw::result_set(data.as_ptr(), data.len() as i32) }
    }
    pub fn fail(data: &[u8]) -> i32 {
        unsafe { raw::fail(data.as_ptr(), data.len() as i32) }
    }
    pub fn control() -> i32 {
        unsafe { raw::control() }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod backend {
    pub use crate::native::sys::*;
}

pub use backend::*;
