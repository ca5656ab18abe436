"""`fedpriv bench`: what encrypted aggregation costs against plaintext, measured side by side."""
