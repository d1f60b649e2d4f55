//! Sluice as an AWS Lambda function.

fn main() {}
