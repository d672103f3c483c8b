using System.Reflection;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;

namespace OutboxComms.Core.Security;

/// <summary>
/// Reads every stored secret and re-encrypts each that is not under the current key (the first in
/// OUTBOXCOMMS_ENCRYPTION_KEY), or not yet bound to its company and column (version 1 envelopes,
/// see <see cref="SecretSlot"/>). Run after putting a new key first; once it reports nothing left
/// under the old key, the old key can be dropped from the configuration.
/// </summary>
public sealed class SecretRotation(OutboxDbContext db, SecretProtector secrets)
{
    // Every secret property (a test holds CompanySettings.SecretColumns to the byte[] properties).
    private static readonly PropertyInfo[] SecretProperties = [.. CompanySettings.SecretColumns.Keys.Select(name => typeof(CompanySettings).GetProperty(name)!)];

    /// <summary>
    /// What was done. <paramref name="Unreadable"/> lists the secrets left as they were because they
    /// cannot be decrypted (company id, column, why): altered, copied from another row, or under a
    /// key no longer configured. They must be entered again in settings.
    /// </summary>
    public sealed record Result(int Companies, int Reencrypted, int AlreadyCurrent, IReadOnlyList<(Guid CompanyId, string Column, string Reason)> Unreadable);

    public Task<Result> RotateAsync(CancellationToken cancellationToken) => RotateAsync(dryRun: false, cancellationToken);

    /// <summary>
    /// Re-encrypts every secret not under the current key. With <paramref name="dryRun"/> it only
    /// reads and counts: how many would be re-encrypted, and which cannot be read — to run before a
    /// rotation, with the new key first, from a machine that has the keys the API and workers will
    /// have, and again after it.
    /// </summary>
    public async Task<Result> RotateAsync(bool dryRun, CancellationToken cancellationToken)
    {
        int companies = 0, reencrypted = 0, current = 0;
        var unreadable = new List<(Guid, string, string)>();
        var ids = await db.CompanySettings.Select(s => s.CompanyId).ToListAsync(cancellationToken);
        foreach (var id in ids)
        {
            // One company per transaction: a crash midway leaves every value readable (old or new key).
            // The row is locked while it is re-encrypted: a settings PUT that stores a new secret
            // meanwhile either waits for this commit or is read here, never overwritten with the old value.
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            var settings = (await db.CompanySettings
                .FromSql($"SELECT * FROM company_settings WHERE company_id = {id} FOR NO KEY UPDATE")
                .ToListAsync(cancellationToken)).SingleOrDefault();
            if (settings is null)
            {
                continue; // the company was deleted since the ids were read
            }
            var changed = false;
            var reencryptedBefore = reencrypted;
            foreach (var property in SecretProperties)
            {
                if (property.GetValue(settings) is not byte[] envelope)
                {
                    continue;
                }
                // Every value is read, current ones too, so the run also reports a value that
                // cannot be used (copied from another row, altered). One unreadable value must not
                // stop the rotation of every company after it (a rerun would stop there again, and
                // the old key could never be dropped).
                var slot = settings.Slot(property.Name);
                string clear;
                try
                {
                    clear = secrets.Unprotect(envelope, slot);
                }
                catch (System.Security.Cryptography.CryptographicException ex)
                {
                    unreadable.Add((id, slot.Column, ex.Message));
                    continue;
                }
                if (!secrets.NeedsRotation(envelope))
                {
                    current++;
                    continue;
                }
                reencrypted++;
                if (!dryRun)
                {
                    property.SetValue(settings, secrets.Protect(clear, slot));
                    changed = true;
                }
            }
            if (changed)
            {
                await db.SaveChangesAsync(cancellationToken);
            }
            if (changed || (dryRun && reencrypted > reencryptedBefore))
            {
                companies++;
            }
            await transaction.CommitAsync(cancellationToken);
            db.ChangeTracker.Clear();
        }
        return new Result(companies, reencrypted, current, unreadable);
    }
}
