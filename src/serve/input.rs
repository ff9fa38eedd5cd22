//! MLflow's request formats → rows of chain input (one JSON object per row): the four JSON
//! input fields, and `text/csv` as MLflow's scoring server reads it (`pandas.read_csv`: a
//! header row of column names, one row per input).

use serde_json::{Map, Value};

use super::{InputCheck, ServeError};

/// The four input fields of MLflow's scoring protocol, in the order its message names them.
const FORMATS: [&str; 4] = [
    "instances",
    "dataframe_records",
    "inputs",
    "dataframe_split",
];

/// A parsed scoring request.
#[derive(Debug)]
pub(super) struct Request {
    /// One chain input per row, in request order.
    pub(super) rows: Vec<Value>,
    /// The request's `params` (empty when absent).
    pub(super) params: Map<String, Value>,
}

impl Request {
    /// Whether the caller asked for a stream with `"params": {"stream": true}`.
    pub(super) fn wants_stream(&self) -> bool {
        self.params.get("stream") == Some(&Value::Bool(true))
    }
}

/// Parses a request body. `check` decides whether an `inputs` object with list values is
/// one row or columns (MLflow reads `{"name": ["Ada", "Bob"]}` as two rows).
pub(super) fn parse(body: &[u8], check: &InputCheck) -> Result<Request, ServeError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ServeError::BadRequest(format!(
            "Invalid input. Ensure that input is a valid JSON formatted string. Error: {err}"
        ))
    })?;
    let Value::Object(mut object) = value else {
        return Err(not_one_format(&[]));
    };
    let present: Vec<&str> = FORMATS
        .into_iter()
        .filter(|key| object.contains_key(*key))
        .collect();
    let [format] = present[..] else {
        return Err(not_one_format(&present));
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => {
            return Err(ServeError::BadRequest(
                "`params` must be a JSON object".to_owned(),
            ));
        }
    };
    let data = object.remove(format).unwrap_or(Value::Null);
    let rows = match format {
        "dataframe_split" => split_rows(data)?,
        "dataframe_records" => list_rows(data, format)?,
        _ => match data {
            Value::Object(map) => object_rows(map, check),
            other => list_rows(other, format)?,
        },
    };
    if rows.is_empty() {
        return Err(ServeError::BadRequest(format!("`{format}` holds no rows")));
    }
    Ok(Request { rows, params })
}

/// A `text/csv` body: a header row of input fields, then one row per input. Cells are typed as
/// `pandas.read_csv` types them (an empty cell is null; `True`/`False`, whole numbers and
/// decimals become booleans and numbers); a row that the chain's input check refuses with
/// those types but accepts with every cell as text is taken as text (a `"123"` that is a
/// string field).
pub(super) fn parse_csv(body: &[u8], check: &InputCheck) -> Result<Request, ServeError> {
    let bad = |what: String| ServeError::BadRequest(format!("Invalid CSV input: {what}"));
    let mut reader = csv::ReaderBuilder::new().from_reader(body);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|err| bad(err.to_string()))?
        .iter()
        .map(str::to_owned)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(bad("the first line must name the columns".to_owned()));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|err| bad(err.to_string()))?;
        let typed: Map<String, Value> = columns
            .iter()
            .cloned()
            .zip(record.iter().map(csv_cell))
            .collect();
        let typed = Value::Object(typed);
        if check(&typed).is_ok() {
            rows.push(typed);
            continue;
        }
        let text = Value::Object(
            columns
                .iter()
                .cloned()
                .zip(record.iter().map(|cell| Value::String(cell.to_owned())))
                .collect(),
        );
        rows.push(if check(&text).is_ok() { text } else { typed });
    }
    if rows.is_empty() {
        return Err(bad("no rows after the header".to_owned()));
    }
    Ok(Request {
        rows,
        params: Map::new(),
    })
}

/// One CSV cell typed as `pandas.read_csv` would type it.
fn csv_cell(cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    match cell {
        "True" | "TRUE" | "true" => return Value::Bool(true),
        "False" | "FALSE" | "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(int) = cell.parse::<i64>() {
        return Value::from(int);
    }
    match cell.parse::<f64>() {
        Ok(float) if float.is_finite() => Value::from(float),
        _ => Value::String(cell.to_owned()),
    }
}

fn not_one_format(present: &[&str]) -> ServeError {
    ServeError::BadRequest(format!(
        "The input must be a JSON dictionary with exactly one of the input fields \
         {{'instances', 'dataframe_records', 'inputs', 'dataframe_split'}}. \
         Received dictionary with input fields: {present:?}."
    ))
}

/// `{"columns": [...], "data": [[...], ...]}` → one object per data row.
fn split_rows(data: Value) -> Result<Vec<Value>, ServeError> {
    let bad = |what: &str| ServeError::BadRequest(format!("`dataframe_split` {what}"));
    let Value::Object(mut split) = data else {
        return Err(bad("must be an object with `columns` and `data`"));
    };
    let Some(Value::Array(columns)) = split.remove("columns") else {
        return Err(bad("needs `columns`, a list of column names"));
    };
    let columns: Vec<String> = columns
        .into_iter()
        .map(|c| match c {
            Value::String(name) => Ok(name),
            _ => Err(bad("`columns` must be strings")),
        })
        .collect::<Result<_, _>>()?;
    let Some(Value::Array(data)) = split.remove("data") else {
        return Err(bad("needs `data`, a list of rows"));
    };
    data.into_iter()
        .enumerate()
        .map(|(index, row)| match row {
            Value::Array(cells) if cells.len() == columns.len() => {
                Ok(Value::Object(columns.iter().cloned().zip(cells).collect()))
            }
            _ => Err(bad(&format!(
                "row {index} must be a list of {} values, one per column",
                columns.len()
            ))),
        })
        .collect()
}

/// A list of rows.
fn list_rows(data: Value, format: &str) -> Result<Vec<Value>, ServeError> {
    match data {
        Value::Array(rows) => Ok(rows),
        _ => Err(ServeError::BadRequest(format!(
            "`{format}` must be a list of rows"
        ))),
    }
}

/// An object is one row, unless it only makes sense as columns: every value a list of
/// the same length, and the object itself not a valid row.
fn object_rows(map: Map<String, Value>, check: &InputCheck) -> Vec<Value> {
    let lengths: Vec<usize> = map
        .values()
        .filter_map(|v| v.as_array().map(Vec::len))
        .collect();
    let columnar =
        !map.is_empty() && lengths.len() == map.len() && lengths.windows(2).all(|w| w[0] == w[1]);
    let row = Value::Object(map);
    if !columnar || check(&row).is_ok() {
        return vec![row];
    }
    let Value::Object(map) = row else {
        return Vec::new();
    };
    let count = lengths.first().copied().unwrap_or(0);
    let mut rows = vec![Map::new(); count];
    for (key, column) in map {
        if let Value::Array(cells) = column {
            for (row, cell) in rows.iter_mut().zip(cells) {
                row.insert(key.clone(), cell);
            }
        }
    }
    rows.into_iter().map(Value::Object).collect()
}
