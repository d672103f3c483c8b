using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Security;
using OutboxComms.Worker.Ops;

namespace OutboxComms.Worker;

/// <summary>
/// The worker executable's verbs. <c>run</c> (the default) hosts the dispatcher; the others are
/// one-shot ops commands that share its configuration (appsettings, environment variables).
/// </summary>
public static class WorkerCommands
{
    private const string Usage = """
        Usage: OutboxComms.Worker [verb] [options]
          run                 dispatch messages (default)
          migrate             apply pending database migrations, then exit
          migrate --script    print every migration as one plain SQL script, then exit
          rotate-keys         re-encrypt provider secrets under the current (first) key in OUTBOXCOMMS_ENCRYPTION_KEY
          rotate-keys --dry-run  count what would be re-encrypted and list what cannot be read; change nothing
        """ + "\n" + ReplayCommand.Usage + "\n" + PurgeCompanyCommand.Usage + "\n" + """
        Configuration: ConnectionStrings__Outbox (required), see README.
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        try
        {
            return await RunVerbAsync(args);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // An unreachable database, a missing connection string, a bad setting, a changed
            // migration: one line and exit code 1, not an unhandled-exception abort (134) with a
            // stack trace (the host has logged the details when it got that far).
            await Console.Error.WriteLineAsync($"error: {ex.GetType().Name}: {ex.Message}");
            return 1;
        }
    }

    private static async Task<int> RunVerbAsync(string[] args)
    {
        if (args is ["--help" or "-h" or "help", ..])
        {
            Console.Out.WriteLine(Usage);
            return 0;
        }
        // The verb is the first argument that is not a setting override, wherever the overrides are:
        // "--ConnectionStrings:Outbox=… replay --status FAILED" must replay (a dry run by default),
        // not start a dispatcher that ignores the word "replay" and sends from the operator's machine.
        var verbAt = Array.FindIndex(args, a => !IsConfiguration(a));
        var verb = verbAt < 0 ? "run" : args[verbAt];
        string[] rest = verbAt < 0 ? args : [.. args[..verbAt], .. args[(verbAt + 1)..]];
        // The dispatcher takes setting overrides only: anything else is a mistake (a verb misspelt
        // or misplaced, an option of another verb) that must not start it.
        if (verb == "run" && rest.FirstOrDefault(a => !IsConfiguration(a)) is { } stray)
        {
            await Console.Error.WriteLineAsync($"run: unknown argument '{stray}' (settings are given as --Section:Key=value).\n{Usage}");
            return 2;
        }
        // One-shot verbs take configuration overrides (--Section:Key=value) and their own options
        // only: a mistyped option ("migrate --dry-run") must not go ahead and change the database.
        if (verb is "migrate" or "rotate-keys" && rest.FirstOrDefault(a => !IsConfiguration(a) && !(verb == "migrate" && a == "--script") && !(verb == "rotate-keys" && a == "--dry-run")) is { } unknown)
        {
            await Console.Error.WriteLineAsync($"{verb}: unknown option '{unknown}'.\n{Usage}");
            return 2;
        }
        switch (verb)
        {
            case "migrate" when rest.Contains("--script"):
                Console.Out.Write(SchemaMigrator.Script());
                return 0;
            case "migrate":
                using (var host = BuildHost(rest))
                {
                    await host.Services.GetRequiredService<SchemaMigrator>().ApplyAsync(CancellationToken.None);
                }
                return 0;
            case "rotate-keys":
                using (var host = BuildHost([.. rest.Where(a => a != "--dry-run")]))
                await using (var scope = host.Services.CreateAsyncScope())
                {
                    var rotation = ActivatorUtilities.CreateInstance<SecretRotation>(scope.ServiceProvider);
                    var dryRun = rest.Contains("--dry-run");
                    var result = await rotation.RotateAsync(dryRun, CancellationToken.None);
                    var key = scope.ServiceProvider.GetRequiredService<SecretProtector>().CurrentKeyId;
                    Console.Out.WriteLine(dryRun
                        ? $"Would re-encrypt {result.Reencrypted} secrets in {result.Companies} companies under key '{key}'; {result.AlreadyCurrent} are already current. Nothing was changed (--dry-run)."
                        : $"Re-encrypted {result.Reencrypted} secrets in {result.Companies} companies under key '{key}'; {result.AlreadyCurrent} were already current.");
                    foreach (var (company, column, reason) in result.Unreadable)
                    {
                        await Console.Error.WriteLineAsync($"error: company {company}: {column} was left as it is: {reason}");
                    }
                    // Unreadable secrets must be entered again in settings before the old key is dropped.
                    return result.Unreadable.Count == 0 ? 0 : 1;
                }
            case "replay":
                using (var host = BuildHost([.. rest.Where(a => IsConfiguration(a) && !ReplayCommand.IsOwnOption(a))]))
                {
                    return await ReplayCommand.RunAsync(rest, ActivatorUtilities.CreateInstance<MessageReplay>(host.Services), Console.Out, CancellationToken.None, Console.Error);
                }
            case "purge-company" when PurgeCompanyCommand.Parse(rest, out var purgeError) is null:
                await Console.Error.WriteLineAsync($"purge-company: {purgeError}.\n{Usage}");
                return 2;
            case "purge-company":
                using (var host = BuildHost([.. rest.Where(PurgeCompanyCommand.IsSettingOverride)]))
                {
                    return await PurgeCompanyCommand.RunAsync(rest, host.Services.GetRequiredService<Npgsql.NpgsqlDataSource>(), Console.Out, Console.Error, CancellationToken.None);
                }
            case "run":
                await BuildHost(rest).RunAsync();
                return 0;
            default:
                await Console.Error.WriteLineAsync($"Unknown verb '{verb}' (settings are given as --Section:Key=value).\n{Usage}");
                return 2;
        }
    }

    /// <summary>A configuration override as the host reads it from the command line: --Key=value or /Key=value.</summary>
    internal static bool IsConfiguration(string arg) => arg is ['-', '-', _, ..] or ['/', _, ..] && arg.Contains('=', StringComparison.Ordinal);

    internal static IHost BuildHost(string[] args)
    {
        // appsettings.json sits beside the assembly: found from any working directory.
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        builder.AddWorkerServices();
        return builder.Build();
    }
}
