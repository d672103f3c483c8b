using Microsoft.Extensions.Options;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

public sealed class AttachmentMemoryTests
{
    private const long Megabyte = 1024 * 1024;

    private static AttachmentMemory Budget(int megabytes) => new(Options.Create(new DispatchOptions { AttachmentMemoryMegabytes = megabytes }));

    [Fact]
    public async Task Sends_wait_their_turn_for_the_bytes_first_come_first_served()
    {
        var budget = Budget(1);

        var first = await budget.ReserveAsync(600 * 1024, TestContext.Current.CancellationToken);
        var second = budget.ReserveAsync(600 * 1024, TestContext.Current.CancellationToken).AsTask();
        var third = budget.ReserveAsync(100 * 1024, TestContext.Current.CancellationToken).AsTask();   // would fit, but comes after a waiter

        Assert.False(second.IsCompleted);
        Assert.False(third.IsCompleted);
        first.Dispose();
        first.Dispose();   // once only
        using var secondReservation = await second.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        using var thirdReservation = await third.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        Assert.Equal(Megabyte - 700 * 1024, budget.Available);
    }

    [Fact]
    public async Task A_waiter_whose_send_is_cancelled_leaves_the_queue_and_the_bytes_as_they_were()
    {
        var budget = Budget(1);
        using var held = await budget.ReserveAsync(Megabyte, TestContext.Current.CancellationToken);
        using var stop = new CancellationTokenSource();

        var waiting = budget.ReserveAsync(Megabyte, stop.Token).AsTask();
        var after = budget.ReserveAsync(Megabyte, TestContext.Current.CancellationToken).AsTask();
        await stop.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        Assert.Equal(0, budget.Available);
        held.Dispose();
        using var next = await after.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);   // the cancelled one no longer stands in its way
        Assert.Equal(0, budget.Available);
    }

    [Fact]
    public async Task A_cancelled_waiter_at_the_head_of_the_queue_lets_those_behind_it_that_fit_go()
    {
        var budget = Budget(1);
        using var held = await budget.ReserveAsync(Megabyte / 2, TestContext.Current.CancellationToken);
        using var stop = new CancellationTokenSource();
        var large = budget.ReserveAsync(Megabyte, stop.Token).AsTask();
        var small = budget.ReserveAsync(Megabyte / 4, TestContext.Current.CancellationToken).AsTask();

        await stop.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => large);
        using var granted = await small.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);   // without waiting for the held half to be given back
        Assert.Equal(Megabyte / 4, budget.Available);
    }

    [Fact]
    public void A_message_reserves_its_files_stored_sizes_or_the_most_a_message_carries_when_a_size_is_unknown()
    {
        var budget = Budget(1024);
        CommunicationAttachment File(long? size, string? url = null) => new() { FileName = "a.pdf", SizeBytes = size, Url = url, Content = url is null ? [] : null };

        Assert.Equal(3 * Megabyte, budget.BytesFor([File(Megabyte), File(2 * Megabyte)]));
        Assert.Equal(AttachmentLoader.MaxBytes, budget.BytesFor([File(Megabyte), File(null)]));
        Assert.Equal(AttachmentLoader.MaxBytes, budget.BytesFor([File(null, "https://files.example/a.pdf")]));
        Assert.Equal(Megabyte, Budget(1).BytesFor([File(null)]));   // never more than the whole budget
    }
}
