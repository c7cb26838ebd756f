//! Placeholder: replaced by the renderer.
use pyo3::prelude::*;

#[pymodule]
fn _skelmap(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RENDERER_VERSION", "0")?;
    Ok(())
}
