# RoleGuardHarness: a TAP::Harness that also writes the counts test/run needs.
#
# test/run runs `make installcheck` with PERL5LIB=<tree>/test and
#   PROVE_FLAGS='-v --merge --formatter TAP::Formatter::Console
#                --harness RoleGuardHarness'
# so prove behaves as usual (verbose output, its own summary report; the
# Console formatter prints each line as it comes, where the File one that
# prove picks when stdout is not a terminal holds a file's output until the
# file ends), and once all files have run this class prints one line per
# file and writes
#   "PASSED FAILED SKIPPED"   to the file named by $ENV{RG_TAP_COUNTS}
#   failing test files        to the file named by $ENV{RG_TAP_FAILED}, one a line
#
# Counting, per test file:
#   passed  = assertions that passed (TODO tests count as passed, as prove does),
#             less those skipped
#   skipped = assertions skipped with "# SKIP", plus 1 for a file that skips all
#   failed  = assertions that failed
#           + planned assertions that never ran (the file died mid-way)
#           + 1 if the file has a problem but no failed or missing assertion to
#             show for it (non-zero exit after all tests passed, no plan at
#             all because it died before done_testing, TAP parse errors)
#   a file never started because an earlier one bailed out: 1 failed
package RoleGuardHarness;

use strict;
use warnings;
use parent 'TAP::Harness';

sub new
{
	my ($class, @args) = @_;
	my $self = $class->SUPER::new(@args);
	$self->callback(after_runtests => \&_report);
	# Output as it comes, even into a pipe: a stage killed by its timeout
	# still shows (and test/run still counts) what ran.
	STDOUT->autoflush(1);
	STDERR->autoflush(1);
	return $self;
}

# Remember which files were asked for: after a "Bail out!" prove stops, and
# the files it never started count as 1 failed each.
my @requested;

sub runtests
{
	my ($self, @tests) = @_;
	@requested = map { ref $_ ? ($_->[1] // $_->[0]) : $_ } @tests;
	return $self->SUPER::runtests(@tests);
}

sub _report
{
	my ($aggregator) = @_;
	my ($passed, $failed, $skipped) = (0, 0, 0);
	my (@lines, @failed_files);
	my %ran = map { $_ => 1 } $aggregator->descriptions;

	for my $file ($aggregator->descriptions)
	{
		my ($parser) = $aggregator->parsers($file);
		my $skip = scalar($parser->skipped);
		my $pass = scalar($parser->passed) - $skip;
		my $fail = scalar($parser->failed);
		my @notes;

		if ($parser->skip_all)
		{
			$skip++;
			push @notes, 'skipped: ' . $parser->skip_all;
		}

		my $planned = $parser->tests_planned;
		my $run     = $parser->tests_run;
		if (defined $planned && $planned > $run)
		{
			$fail += $planned - $run;
			push @notes, "planned $planned, ran $run";
		}
		if ($parser->exit || $parser->wait)
		{
			push @notes,
			  'exit status ' . $parser->exit . ($parser->wait & 127 ? ' (signal ' . ($parser->wait & 127) . ')' : '');
		}
		push @notes, map { "parse error: $_" } $parser->parse_errors;

		$fail = 1 if $fail == 0 && $parser->has_problems;

		$passed  += $pass;
		$failed  += $fail;
		$skipped += $skip;
		push @failed_files, $file if $fail;
		push @lines,
		  sprintf('  %s: %d passed, %d failed%s%s',
			$file, $pass, $fail, ($skip ? ", $skip skipped" : ''),
			(@notes ? ' (' . join('; ', @notes) . ')' : ''));
	}

	for my $file (grep { !$ran{$_} } @requested)
	{
		$failed++;
		push @failed_files, $file;
		push @lines, "  $file: not run (an earlier file bailed out): counted as 1 failed";
	}

	print "\nTAP results per file:\n", map { "$_\n" } @lines;

	if (my $f = $ENV{RG_TAP_COUNTS})
	{
		open my $fh, '>', $f or die "cannot write $f: $!";
		print $fh "$passed $failed $skipped\n";
		close $fh;
	}
	if (my $f = $ENV{RG_TAP_FAILED})
	{
		open my $fh, '>', $f or die "cannot write $f: $!";
		print $fh map { "$_\n" } @failed_files;
		close $fh;
	}
	return;
}

1;
