using System.Globalization;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Worker.Ops;

/// <summary>
/// <c>OutboxComms.Worker replay</c>: puts FAILED, BOUNCED or SUPPRESSED messages back in the outbox,
/// using the same SQL as the API's replay endpoints. A dry run (count only) unless <c>--execute</c>.
/// </summary>
public static class ReplayCommand
{
    public const string Usage = """
          replay [--company ID] [--id N] [--status FAILED|BOUNCED|SUPPRESSED] [--channel EMAIL|WHATSAPP|SMS]
                 [--type INVOICE|...] [--from 2026-11-01] [--to 2026-11-24] [--error "Twilio 30003"] [--actor NAME] [--execute [--all]]
                              count (dry run) or, with --execute, replay failed messages
                              (created from --from up to and including the day --to, UTC; or give
                              instants such as 2026-11-24T18:30:00+05:30); --execute without any
                              filter replays every failed message ever, so it also needs --all;
                              --actor names who replays in the record (default: the OS user,
                              which in a container is the image's)
        """;

    /// <summary>Runs the verb; its result goes to <paramref name="output"/>, a usage error to <paramref name="errors"/> (else to the output) with exit code 2.</summary>
    public static async Task<int> RunAsync(string[] args, MessageReplay replay, TextWriter output, CancellationToken cancellationToken, TextWriter? errors = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(replay);
        ArgumentNullException.ThrowIfNull(output);
        ReplayFilter filter;
        bool execute;
        string? actor;
        try
        {
            (filter, execute, actor) = Parse(args);
            if (execute && filter == new ReplayFilter() && !args.Contains("--all"))
            {
                throw new FormatException("--execute without a filter would replay every failed, bounced and suppressed message of every company, ever; "
                    + "narrow it (--company, --from, --status, …) or say --all");
            }
        }
        catch (FormatException ex)
        {
            await (errors ?? output).WriteLineAsync($"replay: {ex.Message}\n{Usage}");
            return 2;
        }

        var scope = filter.CompanyId is { } company ? $"company {company}" : "all companies";
        if (!execute)
        {
            var matched = await replay.CountAsync(filter, cancellationToken);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{matched} messages would be replayed ({scope}). Add --execute to replay them."));
            return 0;
        }
        var replayed = await replay.ReplayAsync(filter, $"ops cli ({actor ?? Environment.UserName})", cancellationToken);
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Replayed {replayed} messages ({scope}); workers were notified."));
        return 0;
    }

    private static readonly string[] ValueOptions = ["--company", "--id", "--status", "--channel", "--type", "--from", "--to", "--error", "--actor"];

    /// <summary>
    /// One of this verb's options written with "=" (--from=2026-11-20): that option, not a
    /// configuration override, which it would otherwise look like (and be dropped as, widening the replay).
    /// </summary>
    internal static bool IsOwnOption(string arg) =>
        ValueOptions.Any(option => arg.StartsWith(option + "=", StringComparison.OrdinalIgnoreCase));

    private static (ReplayFilter Filter, bool Execute, string? Actor) Parse(string[] args)
    {
        string? actor = null;
        args = [.. args.SelectMany(arg => IsOwnOption(arg) ? [arg[..arg.IndexOf('=', StringComparison.Ordinal)], arg[(arg.IndexOf('=', StringComparison.Ordinal) + 1)..]] : new[] { arg })];
        var filter = new ReplayFilter();
        var execute = false;
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new FormatException($"{args[i]} needs a value");
            if (args[i] == "--all" || IsSettingOverride(args[i]))
            {
                continue;
            }
            if (args[i] == "--actor")
            {
                actor = Value() is { } name && !string.IsNullOrWhiteSpace(name) && name.Length <= 100 ? name.Trim() : throw new FormatException("--actor is who replays, e.g. --actor \"meera (ops)\", at most 100 characters");
                continue;
            }
            if (args[i] == "--execute")
            {
                // Only as an option of its own: "--error --execute" searches for that text, dry.
                execute = true;
                continue;
            }
            filter = args[i] switch
            {
                "--company" => filter with { CompanyId = Guid.TryParse(Value(), out var c) ? c : throw new FormatException("--company is a company id (uuid)") },
                "--id" => filter with { MessageId = long.TryParse(Value(), CultureInfo.InvariantCulture, out var id) ? id : throw new FormatException("--id is a message id") },
                "--status" => filter with { Status = Enum<DeliveryStatus>(Value(), "--status") },
                "--channel" => filter with { Channel = Enum<Channel>(Value(), "--channel") },
                "--type" => filter with { Type = Enum<MessageType>(Value(), "--type") },
                "--from" => filter with { CreatedFrom = ReplayFilter.TryParseFrom(Value(), out var from) ? from : throw new FormatException("--from is a date or ISO 8601 instant") },
                "--to" => filter with { CreatedTo = ReplayFilter.TryParseTo(Value(), out var to) ? to : throw new FormatException("--to is a date or ISO 8601 instant") },
                // Empty, it would match everything yet count as a filter: a script's unset $ERR widening the replay.
                "--error" => filter with { ErrorContains = Value() is { } text && !string.IsNullOrWhiteSpace(text) ? text : throw new FormatException("--error needs the text to match") },
                _ => throw new FormatException($"unknown option {args[i]}{(WorkerCommands.IsConfiguration(args[i]) ? " (a setting override names its section, --Section:Key=value)" : "")}"),
            };
        }
        if (filter.Status is { } status && !MessageReplay.Replayable.Contains(status))
        {
            throw new FormatException("--status is FAILED, BOUNCED or SUPPRESSED");
        }
        return (filter, execute, actor);
    }

    /// <summary>
    /// A configuration override this verb passes to the host: a sectioned key (--ConnectionStrings:Outbox=…)
    /// or an environment-style name (--OUTBOXCOMMS_ENCRYPTION_KEY=…). Anything else with "=" is a
    /// mistyped option (--chanel=SMS), refused rather than dropped, which would widen the replay.
    /// </summary>
    private static bool IsSettingOverride(string arg)
    {
        if (!WorkerCommands.IsConfiguration(arg))
        {
            return false;
        }
        var key = arg.TrimStart('-', '/')[..arg.TrimStart('-', '/').IndexOf('=', StringComparison.Ordinal)];
        if (ValueOptions.Any(option => option[2..].Equals(key, StringComparison.OrdinalIgnoreCase)))
        {
            return false;   // /COMPANY=…: this verb's option mistyped, refused rather than dropped as a setting
        }
        return key.Contains(':', StringComparison.Ordinal) || key.All(c => char.IsAsciiLetterUpper(c) || char.IsAsciiDigit(c) || c == '_');
    }

    private static T Enum<T>(string value, string option) where T : struct, System.Enum =>
        WireName<T>.TryParse(value, out var parsed) ? parsed : throw new FormatException($"{option} is one of {string.Join(", ", WireName<T>.All)}");
}
