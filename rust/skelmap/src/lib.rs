//! `sconet._skelmap`: skeleton-map renderer and Postural Asymmetry Vectors for sconet.
//!
//! Private extension module; `sconet.render` is its documented Python front. Pipeline per frame
//! (OpenGait's `pretreatment_heatmap.py`; `sconet.render.reference` is that recipe written with
//! OpenGait's own libraries, for the parity tests): optional imputation, linear ([`impute`]) or
//! OpenGait's KNN ([`knn`]), hip-centred normalisation to 85 px on a 128 x 128 canvas in the
//! input's float type ([`geometry`]),
//! gaussian limb (log domain) and joint (separable) planes ([`draw`]), matplotlib-gray
//! quantisation ([`lut`]), crop and OpenCV INTER_AREA resize to 64 x 64 in float64 on
//! `level / 255`, stored by truncation as OpenGait does ([`resize`], [`render`]). The frame
//! renderer is built for AVX-512, AVX2 and portable CPUs, chosen at run time ([`simd`]).
//!
//! Every entry point validates its input and reports problems as `ValueError` naming the
//! sequence index; heavy work runs with the GIL released on a per-call rayon pool (no global
//! pool: fork safety) and behind `catch_unwind`, so no panic crosses the FFI boundary.

pub mod draw;
pub mod geometry;
pub mod impute;
pub mod knn;
pub mod lut;
pub mod params;
pub mod pav;
pub mod render;
pub mod resize;
pub mod simd;
#[cfg(test)]
mod walker;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    /// A seeded xorshift64 stream of u64 (test data, not statistics).
    pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{
    IntoPyArray, PyArray1, PyArray3, PyArray4, PyArrayDyn, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rayon::prelude::*;

use params::{Named, Params, Settings, KP_FLOATS, NUM_JOINTS};
use render::{SeqError, Sequence};

/// Version of the rendering rules; part of every cache key. Bump on any output change.
///
/// 2: the joint plane is max-merged as separable values (row factor x column factor) instead
/// of through a per-pixel `exp`; float rounding moves about 1 pixel in 10^5 by one grey level
/// (agreement with the float64 reference unchanged).
/// 3: OpenGait's last step: the crop is resized in float64 on `level / 255` and stored by
/// truncation (was: resized on uint8 levels, rounded), which lowers about a third of all
/// pixels by one level.
pub const RENDERER_VERSION: &str = "3";

fn seq_error(e: SeqError) -> PyErr {
    if e.index == usize::MAX {
        PyRuntimeError::new_err(e.message)
    } else {
        PyValueError::new_err(format!("sequence {}: {}", e.index, e.message))
    }
}

/// Runs `f` with the GIL released and behind `catch_unwind`: a panic becomes a RuntimeError
/// naming the entry point `what`, never an unwind across the FFI boundary.
fn unwound<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|_| {
            PyRuntimeError::new_err(format!(
                "internal error in sconet._skelmap.{what} (please report)"
            ))
        })
}

/// A pose array as received: float32 or float64 (scikit-learn's dtypes, kept for imputation).
enum Pose<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// Checks the shape of sequence `i` and borrows it.
fn borrow<'py, T: numpy::Element>(
    arr: &Bound<'py, PyArrayDyn<T>>,
    i: usize,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let shape = arr.shape();
    if shape.len() != 3 || shape[1] != NUM_JOINTS || shape[2] != KP_FLOATS {
        return Err(PyValueError::new_err(format!(
            "sequence {i}: expected shape [T, 17, 3], got {shape:?}"
        )));
    }
    if shape[0] == 0 {
        return Err(PyValueError::new_err(format!(
            "sequence {i}: empty sequence (T = 0)"
        )));
    }
    arr.try_readonly()
        .map_err(|e| PyValueError::new_err(format!("sequence {i}: cannot borrow the array ({e})")))
}

/// Reads a Python sequence of `[T, 17, 3]` float32 or float64 arrays (borrowed when
/// C-contiguous).
fn read_poses<'py>(poses: &Bound<'py, PyAny>) -> PyResult<Vec<Pose<'py>>> {
    let mut out = Vec::new();
    let iter = poses.try_iter().map_err(|_| {
        PyValueError::new_err("poses must be a list (or other sequence) of numpy arrays")
    })?;
    for (i, item) in iter.enumerate() {
        let item = item?;
        if let Ok(arr) = item.cast::<PyArrayDyn<f32>>() {
            out.push(Pose::F32(borrow(arr, i)?));
        } else if let Ok(arr) = item.cast::<PyArrayDyn<f64>>() {
            out.push(Pose::F64(borrow(arr, i)?));
        } else {
            let what = item
                .getattr("dtype")
                .map(|d| format!("an array of dtype {d}"))
                .unwrap_or_else(|_| format!("a {}", item.get_type()));
            return Err(PyValueError::new_err(format!(
                "sequence {i}: expected a float32 or float64 numpy array, got {what}"
            )));
        }
    }
    Ok(out)
}

/// The array's values, borrowed when C-contiguous (`as_slice` also accepts Fortran order).
fn values<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArrayDyn<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) if a.is_c_contiguous() => Cow::Borrowed(s),
        _ => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

fn sequences<'a>(arrays: &'a [Pose<'_>]) -> Vec<Sequence<'a>> {
    arrays
        .iter()
        .map(|a| match a {
            Pose::F32(a) => Sequence::f32(values(a), a.shape()[0]),
            Pose::F64(a) => Sequence::f64(values(a), a.shape()[0]),
        })
        .collect()
}

fn thread_count(threads: i64) -> PyResult<usize> {
    usize::try_from(threads).map_err(|_| {
        PyValueError::new_err(format!(
            "threads must be >= 0 (0 = all cores), got {threads}"
        ))
    })
}

/// Renders skeleton maps for a batch of sequences, concatenated in order.
///
/// `poses`: sequence of float32 or float64 `[T, 17, 3]` arrays (x, y, confidence in image
/// pixels; float64 is imputed in float64, then drawn from float32); `joints`: uint8 mask `[17]`
/// of the joints drawn on the joint map; `limbs`: int64 `[L, 2]` keypoint pairs drawn on the
/// limb map; `sigma_limb`, `sigma_joint` > 0; `geometry`: "square" | "aspect"; `alignment`:
/// "per-channel" | "shared"; `impute`: "linear" | "knn" | "none"; `threads`: 0 = all cores;
/// `head`: "keep" | "zero-scores" | "remove" (keypoints 0..5, after imputation).
/// Returns uint8 `[sum T, 2, 64, 64]` (channel 0 limb map, channel 1 joint map): a new array,
/// or `out` (a writeable C-contiguous uint8 array of that shape, e.g. reused from batch to
/// batch), which is written only once every sequence has passed validation.
#[pyfunction]
#[pyo3(signature = (poses, joints, limbs, sigma_limb, sigma_joint, geometry, alignment, impute, threads=0, out=None, head="keep"))]
#[allow(clippy::too_many_arguments)]
fn render_batch<'py>(
    py: Python<'py>,
    poses: &Bound<'py, PyAny>,
    joints: PyReadonlyArray1<'py, u8>,
    limbs: PyReadonlyArray2<'py, i64>,
    sigma_limb: f64,
    sigma_joint: f64,
    geometry: &str,
    alignment: &str,
    impute: &str,
    threads: i64,
    out: Option<Bound<'py, PyAny>>,
    head: &str,
) -> PyResult<Bound<'py, PyArray4<u8>>> {
    let threads = thread_count(threads)?;
    let joints: Vec<u8> = joints.as_array().iter().copied().collect();
    let lshape = limbs.shape();
    if lshape.len() != 2 || lshape[1] != 2 {
        return Err(PyValueError::new_err(format!(
            "limbs must have shape [L, 2], got {lshape:?}"
        )));
    }
    let limbs: Vec<[i64; 2]> = limbs
        .as_array()
        .rows()
        .into_iter()
        .map(|r| [r[0], r[1]])
        .collect();
    let params = Params::new(
        &joints,
        &limbs,
        sigma_limb,
        sigma_joint,
        geometry,
        alignment,
        impute,
        head,
    )
    .map_err(PyValueError::new_err)?;
    let arrays = read_poses(poses)?;
    let seqs = sequences(&arrays);
    let frames: usize = seqs.iter().map(|s| s.frames).sum();
    let want = [frames, params::CHANNELS, params::OUT, params::OUT];
    let Some(out) = out else {
        let flat = unwound(py, "render_batch", || {
            render::render_batch(&seqs, &params, threads)
        })?
        .map_err(seq_error)?;
        return flat.into_pyarray(py).reshape(want);
    };
    let arr = out.cast::<PyArray4<u8>>().map_err(|_| {
        let what = match (out.getattr("dtype"), out.getattr("shape")) {
            (Ok(d), Ok(s)) => format!("an array of dtype {d} and shape {s}"),
            _ => format!("a {}", out.get_type()),
        };
        PyValueError::new_err(format!(
            "out must be a uint8 numpy array of shape {want:?}, got {what}"
        ))
    })?;
    if arr.shape() != want || !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "out must be a C-contiguous uint8 array of shape {want:?}, got shape {:?}{}",
            arr.shape(),
            if arr.is_c_contiguous() {
                ""
            } else {
                " (not C-contiguous)"
            }
        )));
    }
    let mut rw = arr
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("out cannot be written ({e})")))?;
    let buf = rw
        .as_slice_mut()
        .map_err(|e| PyValueError::new_err(format!("out is not one contiguous buffer ({e})")))?;
    unwound(py, "render_batch", || {
        render::render_batch_into(&seqs, &params, threads, buf)
    })?
    .map_err(seq_error)?;
    drop(rw);
    Ok(arr.clone())
}

/// Postural Asymmetry Vectors of a batch of sequences: float32 `[N, 8, 3]`.
#[pyfunction]
#[pyo3(signature = (poses, threads=0))]
fn pav_batch<'py>(
    py: Python<'py>,
    poses: &Bound<'py, PyAny>,
    threads: i64,
) -> PyResult<Bound<'py, PyArray3<f32>>> {
    let threads = thread_count(threads)?;
    let arrays = read_poses(poses)?;
    let seqs = sequences(&arrays);
    let job = |parallel: bool| -> Result<Vec<f32>, SeqError> {
        let one = |(i, s): (usize, &Sequence)| -> Result<[f32; pav::PAV_LEN], SeqError> {
            let data = s
                .checked_f32()
                .map_err(|message| SeqError { index: i, message })?;
            Ok(pav::pav(&data, s.frames))
        };
        let rows: Result<Vec<_>, SeqError> = if parallel {
            seqs.par_iter().enumerate().map(one).collect()
        } else {
            seqs.iter().enumerate().map(one).collect()
        };
        Ok(rows?.into_iter().flatten().collect())
    };
    let flat = unwound(py, "pav_batch", || render::with_pool(threads, job))?
        .map_err(PyRuntimeError::new_err)?
        .map_err(seq_error)?;
    let n = flat.len() / pav::PAV_LEN;
    flat.into_pyarray(py)
        .reshape([n, pav::PAIRS.len(), pav::METRICS])
}

/// Imputation of one `[T, 17, 3]` sequence; returns a new array. `method="linear"`: float32
/// result, ValueError when no keypoint is observed at all; `"knn"`: OpenGait's, in the input's
/// dtype (float32 or float64), the input's values when a coordinate is missing in every frame.
#[pyfunction(name = "impute")]
#[pyo3(signature = (pose, method="linear"))]
fn impute_py<'py>(
    py: Python<'py>,
    pose: &Bound<'py, PyAny>,
    method: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let method = match params::Impute::parse(method) {
        Ok(m @ (params::Impute::Linear | params::Impute::Knn)) => m,
        _ => {
            return Err(PyValueError::new_err(format!(
                "method must be 'linear' or 'knn', got {method:?}"
            )))
        }
    };
    let list = pyo3::types::PyList::new(py, [pose])?;
    let arrays = read_poses(list.as_any())?;
    let seqs = sequences(&arrays);
    let s = &seqs[0];
    let shape = [s.frames, NUM_JOINTS, KP_FLOATS];
    let prepared = unwound(py, "impute", || {
        Ok::<_, String>(match render::prepare_one(s, method)? {
            render::Prepared::F32(d) => Ok(d.into_owned()),
            render::Prepared::F64(d) => Err(d.into_owned()),
        })
    })?
    .map_err(|m| PyValueError::new_err(format!("sequence 0: {m}")))?;
    match prepared {
        Ok(d) => Ok(d.into_pyarray(py).reshape(shape)?.into_any()),
        Err(d) => Ok(d.into_pyarray(py).reshape(shape)?.into_any()),
    }
}

/// The uint8 matplotlib-gray lookup table used for quantisation (for tests).
#[pyfunction]
fn gray_lut<'py>(py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
    lut::gray_lut().to_vec().into_pyarray(py)
}

/// The compiled SIMD variant the renderer uses on this CPU ("avx512", "avx2" or "generic").
#[pyfunction]
fn simd_level() -> &'static str {
    simd::Simd::detect().name()
}

/// Adds `settings` as `{prefix}_SIGMA_LIMB`, `{prefix}_SIGMA_JOINT`, `{prefix}_GEOMETRY`, ...
fn add_settings(m: &Bound<'_, PyModule>, prefix: &str, s: &Settings) -> PyResult<()> {
    m.add(format!("{prefix}_SIGMA_LIMB"), s.sigma_limb)?;
    m.add(format!("{prefix}_SIGMA_JOINT"), s.sigma_joint)?;
    m.add(format!("{prefix}_GEOMETRY"), s.geometry.name())?;
    m.add(format!("{prefix}_ALIGNMENT"), s.alignment.name())?;
    m.add(format!("{prefix}_IMPUTE"), s.impute.name())?;
    m.add(format!("{prefix}_HEAD"), s.head.name())?;
    Ok(())
}

/// The constants Python reads from here (`sconet.render` re-exports them): the skeleton, the PAV
/// layout, the settings' allowed values and defaults, the map sizes.
fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let pairs = |p: &[(usize, usize)]| PyTuple::new(py, p.iter().copied());
    m.add("NUM_JOINTS", NUM_JOINTS)?;
    m.add("JOINT_NAMES", PyTuple::new(py, params::JOINT_NAMES)?)?;
    m.add("COCO_LIMBS", pairs(&params::COCO_LIMBS)?)?;
    m.add("HEAD_JOINTS", PyTuple::new(py, params::HEAD)?)?;
    m.add("MIN_CONFIDENCE", params::EPS)?;
    m.add("PAV_PAIRS", pairs(&pav::PAIRS)?)?;
    m.add("PAV_PAIR_NAMES", PyTuple::new(py, pav::PAIR_NAMES)?)?;
    m.add("PAV_METRICS", PyTuple::new(py, pav::METRIC_NAMES)?)?;
    m.add("GEOMETRIES", PyTuple::new(py, params::Geometry::names())?)?;
    m.add("ALIGNMENTS", PyTuple::new(py, params::Alignment::names())?)?;
    m.add("IMPUTATIONS", PyTuple::new(py, params::Impute::names())?)?;
    m.add("HEADS", PyTuple::new(py, params::Head::names())?)?;
    add_settings(m, "DEFAULT", &params::DEFAULTS)?;
    add_settings(m, "REFERENCE", &params::REFERENCE)?;
    m.add("CANVAS_SIZE", params::CANVAS)?;
    m.add("MAP_SIZE", params::OUT)?;
    m.add("FRAME_SHAPE", (params::CHANNELS, params::OUT, params::OUT))?;
    Ok(())
}

#[pymodule]
fn _skelmap(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RENDERER_VERSION", RENDERER_VERSION)?;
    add_constants(m)?;
    m.add_function(wrap_pyfunction!(render_batch, m)?)?;
    m.add_function(wrap_pyfunction!(pav_batch, m)?)?;
    m.add_function(wrap_pyfunction!(impute_py, m)?)?;
    m.add_function(wrap_pyfunction!(gray_lut, m)?)?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    Ok(())
}
