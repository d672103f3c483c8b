using OutboxComms.Worker;

namespace OutboxComms.Tests.Ops;

/// <summary>The worker executable's verbs: what they refuse before touching anything.</summary>
public sealed class WorkerCommandsTests
{
    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public async Task Help_prints_the_usage_instead_of_starting_the_dispatcher(string flag)
    {
        // Started, the dispatcher would run until stopped (or fail for want of a database): help returns at once.
        Assert.Equal(0, await WorkerCommands.RunAsync([flag]).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("migrate", "--dry-run")]
    [InlineData("migrate", "--scirpt")]
    [InlineData("rotate-keys", "--all")]
    [InlineData("purge-company", "--execute")]           // no --company
    [InlineData("purge-company", "--company=3f0c")]      // not an id (and the spaced form is the option's)
    public async Task A_one_shot_verb_refuses_an_option_it_does_not_know_before_connecting(string verb, string option)
    {
        // No database is configured here: refusing happens before any connection is tried.
        Assert.Equal(2, await WorkerCommands.RunAsync([verb, option]).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("run", "replay")]                   // a verb after "run": not a setting
    [InlineData("--Dispatch:BatchSize=10", "--dry-run")]
    [InlineData("--Dispatch:BatchSize=10", "migrate", "--dry-run")]
    [InlineData("--ConnectionStrings:Outbox", "Host=db")]   // the spaced form: settings are --Section:Key=value
    public async Task Arguments_the_dispatcher_does_not_take_are_refused_instead_of_starting_it(params string[] args)
    {
        // Started, the dispatcher would run until stopped: refusing returns at once.
        Assert.Equal(2, await WorkerCommands.RunAsync(args).WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_verb_after_setting_overrides_is_the_verb()
    {
        // Before, "replay" after an override started the dispatcher (which ignored it) against that
        // database; now it is a replay's dry run, which here cannot reach the database: exit 1 at once.
        const string Unreachable = "--ConnectionStrings:Outbox=Host=127.0.0.1;Port=1;Username=outbox;Database=outbox;Timeout=2";
        Assert.Equal(1, await WorkerCommands.RunAsync([Unreachable, "replay", "--status", "FAILED"]).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("migrate")]
    [InlineData("rotate-keys")]
    [InlineData("rotate-keys", "--dry-run")]   // an option of its own: taken, not refused as unknown (2)
    [InlineData("replay")]
    public async Task A_verb_that_cannot_reach_the_database_exits_with_1_instead_of_aborting(params string[] verb)
    {
        // Nothing listens on port 1: the connection is refused at once.
        const string Unreachable = "--ConnectionStrings:Outbox=Host=127.0.0.1;Port=1;Username=outbox;Database=outbox;Timeout=2";
        Assert.Equal(1, await WorkerCommands.RunAsync([.. verb, Unreachable]).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("--ConnectionStrings:Outbox=Host=db;Database=outbox", true)]
    [InlineData("/Dispatch:BatchSize=100", true)]
    [InlineData("--dry-run", false)]
    [InlineData("--script", false)]
    [InlineData("-x=1", false)]
    public void Configuration_overrides_are_told_apart_from_options(string arg, bool configuration)
    {
        Assert.Equal(configuration, WorkerCommands.IsConfiguration(arg));
    }
}
