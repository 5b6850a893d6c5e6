fn main() -> std::process::ExitCode {
    provium::cli::main()
}
